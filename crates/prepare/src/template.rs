//! `--template`: how each joke becomes the text that is tokenized.

use anyhow::{bail, Result};
use std::collections::HashMap;

/// The placeholder a template must contain exactly once.
pub const TEXT_PLACEHOLDER: &str = "{text}";

/// A template split into literal text, the joke, and special tokens (by id).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Text,
    Special { content: String, id: u32 },
}

impl Template {
    /// Parse `template`, where any of `special_tokens` (content → id) stands for that token
    /// itself rather than for its characters.
    pub fn parse(template: &str, special_tokens: &HashMap<String, u32>) -> Result<Self> {
        if template.matches(TEXT_PLACEHOLDER).count() != 1 {
            bail!("--template must contain {TEXT_PLACEHOLDER} exactly once, got {template:?}");
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let next_special = special_tokens
                .iter()
                .filter_map(|(content, &id)| rest.find(content.as_str()).map(|at| (at, content, id)))
                .min_by_key(|(at, content, _)| (*at, std::cmp::Reverse(content.len())));
            let (literal_end, special) = match next_special {
                Some((at, content, id)) => (at, Some((content.clone(), id))),
                None => (rest.len(), None),
            };
            let literal = &rest[..literal_end];
            for (i, part) in literal.split(TEXT_PLACEHOLDER).enumerate() {
                if i > 0 {
                    pieces.push(Piece::Text);
                }
                if !part.is_empty() {
                    pieces.push(Piece::Literal(part.to_string()));
                }
            }
            rest = &rest[literal_end..];
            if let Some((content, id)) = special {
                rest = &rest[content.len()..];
                pieces.push(Piece::Special { content, id });
            }
        }
        Ok(Self { pieces })
    }

    /// Whether the template puts the special token `id` around each joke.
    pub fn has_special(&self, id: u32) -> bool {
        self.pieces.iter().any(|piece| matches!(piece, Piece::Special { id: special, .. } if *special == id))
    }

    /// The full templated text, special tokens written out as their content.
    pub fn render(&self, text: &str) -> String {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Literal(s) => s.as_str(),
                Piece::Text => text,
                Piece::Special { content, .. } => content.as_str(),
            })
            .collect()
    }

    /// The templated joke as runs of plain text (to be tokenized as text, even where the joke
    /// itself contains a special token's characters) and special token ids, in order.
    pub fn parts(&self, text: &str) -> Vec<TemplatePart> {
        let mut parts: Vec<TemplatePart> = Vec::new();
        for piece in &self.pieces {
            let plain = match piece {
                Piece::Literal(s) => s.as_str(),
                Piece::Text => text,
                Piece::Special { id, .. } => {
                    parts.push(TemplatePart::Special(*id));
                    continue;
                }
            };
            match parts.last_mut() {
                Some(TemplatePart::Plain(run)) => run.push_str(plain),
                _ => parts.push(TemplatePart::Plain(plain.to_string())),
            }
        }
        parts
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Plain(String),
    Special(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> HashMap<String, u32> {
        HashMap::from([("<|endoftext|>".to_string(), 50256)])
    }

    #[test]
    fn default_template_ends_in_the_special_token() {
        let template = Template::parse("JOKE: {text}<|endoftext|>", &specials()).unwrap();
        assert_eq!(template.render("hi"), "JOKE: hi<|endoftext|>");
        assert_eq!(
            template.parts("hi <|endoftext|>"),
            [TemplatePart::Plain("JOKE: hi <|endoftext|>".into()), TemplatePart::Special(50256)]
        );
    }

    #[test]
    fn placeholder_must_appear_once() {
        assert!(Template::parse("JOKE:", &specials()).is_err());
        assert!(Template::parse("{text}{text}", &specials()).is_err());
        let t = Template::parse("<|endoftext|>Q: {text}\n", &specials()).unwrap();
        assert_eq!(t.parts("x"), [TemplatePart::Special(50256), TemplatePart::Plain("Q: x\n".into())]);
        assert!(t.has_special(50256));
        assert!(!Template::parse("Q: {text}", &specials()).unwrap().has_special(50256));
    }
}
