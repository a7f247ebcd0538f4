//! Shared HTTP client for providers: timeouts, retries of reads, error classification.
