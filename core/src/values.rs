//! Config values read before they are told apart: a leaf module the
//! `[data]` and `[training]` tables share.

/// A TOML value that is a word, a number or a list of numbers: what keys
/// such as `weight_decay` and `intensity` take before they are told apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WordOrNumbers {
    /// A string.
    Word(String),
    /// A number (an integer is read as a float).
    Number(f64),
    /// A list of numbers.
    List(Vec<f64>),
}

impl WordOrNumbers {
    /// Reads one from `d`; any other value is an error saying `expected`.
    pub(crate) fn read<'de, D: serde::Deserializer<'de>>(
        d: D,
        expected: &'static str,
    ) -> std::result::Result<Self, D::Error> {
        struct V(&'static str);
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WordOrNumbers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Number(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Word(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<WordOrNumbers, A::Error> {
                let mut list = Vec::new();
                while let Some(v) = seq.next_element::<f64>()? {
                    list.push(v);
                }
                Ok(WordOrNumbers::List(list))
            }
        }
        d.deserialize_any(V(expected))
    }
}
