//! The two ways brummerd runs: for the whole system (root, /etc, /run, group `brummer`) or
//! for one user (`--user`, the XDG directories, a private socket).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::User => "user",
        }
    }
}
