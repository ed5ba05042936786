//! The user-agent client used by `imss call` and `imss bench`.
