//! What the integration tests share.

/// The `moat do` options that pick the platform the tests run on: `MOAT_TEST_PLATFORM`
/// (`ptrace`, `systrap`) if set, else none (Moat's default). `scripts/test` runs the suite
/// once per platform.
pub fn platform_args() -> Vec<String> {
    match std::env::var("MOAT_TEST_PLATFORM") {
        Ok(name) if !name.is_empty() => vec!["--platform".to_string(), name],
        _ => Vec::new(),
    }
}
