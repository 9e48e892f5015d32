use super::RawJoke;
use anyhow::Result;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use std::{fmt, io::BufRead};

/// The fields of a joke-dataset record that matter here; others (`id`, `category`, `rating`)
/// are ignored.
#[derive(Deserialize)]
struct Record {
    title: Option<String>,
    body: Option<String>,
    score: Option<f64>,
}

impl Record {
    /// The joke: the title, then the body on the next line, unless the body already starts with
    /// the title (a common Reddit habit) or one of them is empty.
    fn into_text(self) -> String {
        let title = self.title.unwrap_or_default();
        let body = self.body.unwrap_or_default();
        let (t, b) = (title.trim(), body.trim());
        if t.is_empty() || b.starts_with(t) {
            body
        } else if b.is_empty() {
            title
        } else {
            format!("{t}\n{b}")
        }
    }
}

pub(super) fn read(mut reader: impl BufRead, sink: &mut dyn FnMut(RawJoke)) -> Result<u64> {
    super::skip_bom(&mut reader)?;
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let count = Records { sink }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(count)
}

/// Streams the top-level array element by element instead of building it.
struct Records<'a> {
    sink: &'a mut dyn FnMut(RawJoke),
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = u64;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of joke objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut index = 0u64;
        while let Some(record) = seq.next_element::<Record>()? {
            if record.title.is_none() && record.body.is_none() {
                return Err(de::Error::custom(format!("record {index} has neither `title` nor `body`")));
            }
            let score = record.score;
            (self.sink)(RawJoke { text: record.into_text(), score });
            index += 1;
        }
        Ok(index)
    }
}
