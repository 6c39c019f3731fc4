//! Track-selection expressions (`?filter=`): comparisons of track attributes joined with `&&`,
//! `||`, `!` and parentheses, as in
//! `(type=="video"&&systemBitrate<800000)||type!="video"`.
//!
//! Attributes: `type` (`video`, `audio`, `textstream`), `systemBitrate`, `systemLanguage`,
//! `FourCC`, `trackName`, `trackID`, `MaxWidth`, `MaxHeight`, `SamplingRate`, `Channels`.
//! Values are double-quoted strings or decimal numbers. Numbers compare numerically, strings
//! by equality or byte order.

use std::fmt;

/// Deepest nesting of parentheses and `!` accepted.
pub const MAX_DEPTH: usize = 32;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Number(u64),
    Text(String),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        attribute: String,
        op: Op,
        value: Value,
    },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// Why an expression was refused, with the byte position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub what: &'static str,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.what, self.position)
    }
}

/// The attributes an expression may name.
pub const ATTRIBUTES: &[&str] = &[
    "type",
    "systemBitrate",
    "systemLanguage",
    "FourCC",
    "trackName",
    "trackID",
    "MaxWidth",
    "MaxHeight",
    "SamplingRate",
    "Channels",
];

/// What a track offers an expression.
pub trait Attributes {
    /// The attribute's value, `None` when the track has none (a comparison with it is false).
    fn attribute(&self, name: &str) -> Option<Value>;
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Filter {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let f = p.or()?;
        p.skip_ws();
        if p.pos != p.s.len() {
            return Err(p.err("unexpected text after the expression"));
        }
        Ok(f)
    }

    /// Evaluates the expression for one track.
    pub fn matches(&self, track: &dyn Attributes) -> bool {
        match self {
            Filter::Not(f) => !f.matches(track),
            Filter::And(a, b) => a.matches(track) && b.matches(track),
            Filter::Or(a, b) => a.matches(track) || b.matches(track),
            Filter::Compare {
                attribute,
                op,
                value,
            } => {
                let Some(actual) = track.attribute(attribute) else {
                    return *op == Op::Ne;
                };
                let ord = match (&actual, value) {
                    (Value::Number(a), Value::Number(b)) => a.cmp(b),
                    (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
                    (Value::Number(a), Value::Text(b)) => {
                        a.to_string().as_bytes().cmp(b.as_bytes())
                    }
                    (Value::Text(a), Value::Number(b)) => {
                        a.as_bytes().cmp(b.to_string().as_bytes())
                    }
                };
                match op {
                    Op::Eq => ord.is_eq(),
                    Op::Ne => ord.is_ne(),
                    Op::Lt => ord.is_lt(),
                    Op::Le => ord.is_le(),
                    Op::Gt => ord.is_gt(),
                    Op::Ge => ord.is_ge(),
                }
            }
        }
    }
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> FilterError {
        FilterError {
            position: self.pos,
            what,
        }
    }

    fn skip_ws(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("expression nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'!') && self.s.get(self.pos + 1) != Some(&b'=') {
            self.pos += 1;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.eat("(") {
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if !self.eat(")") {
                return Err(self.err("missing closing parenthesis"));
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected an attribute name"));
        }
        let name = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        let Some(attribute) = ATTRIBUTES.iter().find(|a| a.eq_ignore_ascii_case(name)) else {
            self.pos = start;
            return Err(self.err("unknown attribute"));
        };
        let op = if self.eat("==") {
            Op::Eq
        } else if self.eat("!=") {
            Op::Ne
        } else if self.eat("<=") {
            Op::Le
        } else if self.eat(">=") {
            Op::Ge
        } else if self.eat("<") {
            Op::Lt
        } else if self.eat(">") {
            Op::Gt
        } else {
            return Err(self.err("expected a comparison operator"));
        };
        self.skip_ws();
        let value = match self.s.get(self.pos) {
            Some(b'"') => {
                let open = self.pos;
                self.pos += 1;
                let begin = self.pos;
                while self.s.get(self.pos).is_some_and(|&b| b != b'"') {
                    self.pos += 1;
                }
                if self.pos >= self.s.len() {
                    self.pos = open;
                    return Err(self.err("unterminated string"));
                }
                let text = std::str::from_utf8(&self.s[begin..self.pos])
                    .map_err(|_| self.err("string is not UTF-8"))?
                    .to_string();
                self.pos += 1;
                Value::Text(text)
            }
            Some(b) if b.is_ascii_digit() => {
                let begin = self.pos;
                while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.s[begin..self.pos]).unwrap_or("");
                Value::Number(
                    digits
                        .parse()
                        .map_err(|_| self.err("number out of range"))?,
                )
            }
            _ => return Err(self.err("expected a quoted string or a number")),
        };
        Ok(Filter::Compare {
            attribute: attribute.to_string(),
            op,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct T(HashMap<&'static str, Value>);

    impl Attributes for T {
        fn attribute(&self, name: &str) -> Option<Value> {
            self.0.get(name).cloned()
        }
    }

    fn track(kind: &str, bitrate: u64, lang: Option<&str>) -> T {
        let mut m = HashMap::new();
        m.insert("type", Value::Text(kind.into()));
        m.insert("systemBitrate", Value::Number(bitrate));
        if let Some(l) = lang {
            m.insert("systemLanguage", Value::Text(l.into()));
        }
        T(m)
    }

    #[test]
    fn the_documented_example() {
        let f = Filter::parse("(type==\"video\"&&systemBitrate<800000)||type!=\"video\"").unwrap();
        assert!(f.matches(&track("video", 400_000, None)));
        assert!(!f.matches(&track("video", 800_000, None)));
        assert!(f.matches(&track("audio", 128_000, Some("eng"))));
    }

    #[test]
    fn operators_and_precedence() {
        let f = Filter::parse(
            "type == \"audio\" && systemLanguage == \"fra\" || systemBitrate >= 1000000",
        )
        .unwrap();
        assert!(f.matches(&track("audio", 1, Some("fra"))));
        assert!(!f.matches(&track("audio", 1, Some("eng"))));
        assert!(f.matches(&track("video", 2_000_000, None)));
        let f = Filter::parse("!(type==\"video\")").unwrap();
        assert!(f.matches(&track("audio", 1, None)));
        assert!(!f.matches(&track("video", 1, None)));
        let f = Filter::parse("!type==\"video\"").unwrap();
        assert!(!f.matches(&track("video", 1, None)));
        // A missing attribute only satisfies !=.
        assert!(Filter::parse("systemLanguage!=\"eng\"")
            .unwrap()
            .matches(&track("video", 1, None)));
        assert!(!Filter::parse("systemLanguage==\"eng\"")
            .unwrap()
            .matches(&track("video", 1, None)));
        assert!(Filter::parse("systembitrate<=1")
            .unwrap()
            .matches(&track("video", 1, None)));
    }

    #[test]
    fn bad_expressions() {
        for bad in [
            "",
            "type",
            "type==",
            "type==video",
            "type==\"video",
            "(type==\"video\"",
            "type==\"video\")",
            "bogus==1",
            "systemBitrate<99999999999999999999999",
            "type==\"a\"&&",
            "type===\"a\"",
            "type==\"a\" junk",
            "&&type==\"a\"",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}type==\"a\"{}", "(".repeat(100), ")".repeat(100));
        assert!(Filter::parse(&deep).is_err());
        let nots = format!("{}type==\"a\"", "!".repeat(100));
        assert!(Filter::parse(&nots).is_err());
    }
}
