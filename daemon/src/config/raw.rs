//! The intermediate tree both syntaxes are read into: sections of options
//! with line numbers, no schema. `validate` is the only place that knows
//! what the keys mean, so TOML and UCI get the same checks and messages.

/// Which syntax a tree came from; UCI values are all strings, so the
/// validator accepts e.g. `'5335'` as an integer and `'1'` as a bool there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Toml,
    Uci,
}

#[derive(Debug, Clone)]
pub(crate) struct RawDoc {
    pub syntax: Syntax,
    pub sections: Vec<RawSection>,
    /// Problems the reader found in the document's shape; the validator
    /// reports them along with its own.
    pub errors: Vec<super::ConfigError>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawSection {
    /// `daemon`, `profile`, `device`, ...
    pub kind: String,
    /// `iot` in `[profile.iot]` / `config profile 'iot'`.
    pub name: Option<String>,
    /// 1-based line of the section header.
    pub line: usize,
    pub options: Vec<RawOption>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawOption {
    pub key: String,
    /// 1-based line of the key.
    pub line: usize,
    pub value: RawValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue {
    Str(String),
    /// Items with their own lines, so a bad item in a multi-line list is
    /// reported where it is.
    List(Vec<(String, usize)>),
    Int(i64),
    Bool(bool),
    /// A value of a type no key accepts (float, datetime, table, array of
    /// non-strings); holds a description for the message.
    Other(&'static str),
}

impl RawValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            RawValue::Str(_) => "a string",
            RawValue::List(_) => "a list of strings",
            RawValue::Int(_) => "an integer",
            RawValue::Bool(_) => "a boolean",
            RawValue::Other(t) => t,
        }
    }
}

/// Maps byte offsets to 1-based line numbers.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index() {
        let idx = LineIndex::new("ab\ncd\n\nx");
        assert_eq!(idx.line(0), 1);
        assert_eq!(idx.line(2), 1);
        assert_eq!(idx.line(3), 2);
        assert_eq!(idx.line(6), 3);
        assert_eq!(idx.line(7), 4);
        assert_eq!(idx.line(100), 4);
    }
}
