//! What a completion is about: its operation's kind and connection, packed
//! into the 64 bits of `user_data` the kernel hands back.

/// An operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    /// A cancellation's own completion (its target completes separately).
    Cancel = 4,
    /// The loop's eventfd was written: the server stopped accepting or
    /// closes its connections.
    Wake = 5,
}

/// Kind (4 bits), generation (28 bits: a slot reused for a new connection
/// must not take an old one's late completions), slot (32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) generation: u32,
    pub(super) slot: u32,
}

const GENERATION_BITS: u32 = 28;

impl Token {
    pub(super) fn new(kind: Kind, generation: u32, slot: u32) -> Self {
        Self {
            kind,
            generation: generation & ((1 << GENERATION_BITS) - 1),
            slot,
        }
    }

    /// The token of `user_data`, if a loop made it.
    pub(super) fn parse(user_data: u64) -> Option<Self> {
        let kind = match user_data >> 60 {
            1 => Kind::Accept,
            2 => Kind::Recv,
            3 => Kind::Send,
            4 => Kind::Cancel,
            5 => Kind::Wake,
            _ => return None,
        };
        Some(Self {
            kind,
            generation: ((user_data >> 32) as u32) & ((1 << GENERATION_BITS) - 1),
            slot: user_data as u32,
        })
    }
}

impl From<Token> for u64 {
    fn from(token: Token) -> Self {
        ((token.kind as Self) << 60) | (Self::from(token.generation) << 32) | Self::from(token.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_back_as_it_went_and_generations_wrap() {
        for kind in [
            Kind::Accept,
            Kind::Recv,
            Kind::Send,
            Kind::Cancel,
            Kind::Wake,
        ] {
            let token = Token::new(kind, 0x0abc_def1, u32::MAX);
            assert_eq!(Token::parse(token.into()), Some(token));
        }
        let wrapped = Token::new(Kind::Recv, 1 << GENERATION_BITS, 3);
        assert_eq!(wrapped.generation, 0);
        assert_eq!(Token::parse(0), None, "not one of ours");
    }
}
