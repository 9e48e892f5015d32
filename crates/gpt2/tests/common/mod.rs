pub mod training_pass;
