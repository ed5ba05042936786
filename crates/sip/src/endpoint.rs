//! The user-agent server core (RFC 3261 §8.2, §12, §13.3, §17.2).
