//! Messages written as hex text: one message per line or argument, with
//! whitespace, colons and an optional `0x` prefix tolerated and `#` comments
//! ignored.

use std::fmt;

/// Why a line is not a hex message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexError {
    /// A character that is not a hex digit, at a 1-based column.
    BadChar {
        /// The character.
        ch: char,
        /// Its column in the line.
        column: usize,
    },
    /// An odd number of hex digits.
    OddLength {
        /// How many digits there were.
        digits: usize,
    },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadChar { ch, column } => {
                write!(f, "invalid hex digit {ch:?} at column {column}")
            }
            Self::OddLength { digits } => {
                write!(f, "odd number of hex digits ({digits}): a byte needs two")
            }
        }
    }
}

/// Parses one line; `Ok(None)` for a line that is blank or only a comment.
pub fn parse_line(line: &str) -> Result<Option<Vec<u8>>, HexError> {
    let text = line.split('#').next().unwrap_or("");
    let mut nibbles = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if ch.is_whitespace() || ch == ':' {
            continue;
        }
        // A `0x` prefix is accepted at the start of each group of digits.
        if ch == '0' && matches!(chars.peek(), Some((_, 'x' | 'X'))) {
            let at_group_start = text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || c == ':');
            if at_group_start {
                chars.next();
                continue;
            }
        }
        match ch.to_digit(16) {
            Some(d) => nibbles.push(d as u8),
            None => {
                return Err(HexError::BadChar {
                    ch,
                    column: text[..i].chars().count() + 1,
                });
            }
        }
    }
    if nibbles.is_empty() {
        return Ok(None);
    }
    if nibbles.len() % 2 != 0 {
        return Err(HexError::OddLength {
            digits: nibbles.len(),
        });
    }
    Ok(Some(
        nibbles
            .chunks_exact(2)
            .map(|p| (p[0] << 4) | p[1])
            .collect(),
    ))
}

/// Lower-case hex of `bytes`, for output.
pub fn encode(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_separators_prefixes_and_comments() {
        assert_eq!(
            parse_line("0b00 0010").unwrap(),
            Some(vec![0x0b, 0, 0, 0x10])
        );
        assert_eq!(
            parse_line("0b:00:00:10").unwrap(),
            Some(vec![0x0b, 0, 0, 0x10])
        );
        assert_eq!(
            parse_line("0x0B000010 # cookie").unwrap(),
            Some(vec![0x0b, 0, 0, 0x10])
        );
        assert_eq!(parse_line("  # only a comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
    }

    #[test]
    fn rejects_bad_digits_and_odd_lengths() {
        assert_eq!(
            parse_line("0b0g").unwrap_err(),
            HexError::BadChar { ch: 'g', column: 4 }
        );
        assert_eq!(
            parse_line("0b0").unwrap_err(),
            HexError::OddLength { digits: 3 }
        );
        // `x` inside a group is not a prefix.
        assert!(parse_line("0b0x10").is_err());
    }

    #[test]
    fn encode_round_trips() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(parse_line(&encode(&b)).unwrap(), Some(b.to_vec()));
    }
}
