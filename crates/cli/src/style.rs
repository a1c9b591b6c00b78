//! Terminal colours: used only when asked for, or when stdout is a terminal
//! and `NO_COLOR` is unset (<https://no-color.org>).

use std::io::IsTerminal;

/// When to colour the output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// ANSI styling that is either on or off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Resolves `choice` against stdout and the environment.
    pub fn for_stdout(choice: ColorChoice) -> Self {
        let on = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Self { on }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Secondary information (frame numbers, addresses).
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    /// The main item of a line (a message type).
    pub fn strong(self, text: &str) -> String {
        self.paint("1;32", text)
    }

    /// An error.
    pub fn error(self, text: &str) -> String {
        self.paint("1;31", text)
    }
}
