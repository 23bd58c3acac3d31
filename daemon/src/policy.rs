//! Pure expiry rules (SPEC §6). No clock is read here: callers pass `now`, so the
//! rules are exhaustively testable.

/// Whether an access token may be served without a refresh.
///
/// SPEC §6: a token is fresh enough when it expires more than `min_ttl` seconds
/// from now, or when less than half of its lifetime has passed. The second clause
/// keeps a provider whose tokens live shorter than `min_ttl` from causing a refresh
/// on every call. A token without a known expiry is served as is; an expired one
/// never is.
pub fn is_fresh_enough(now: i64, issued_at: i64, expires_at: Option<i64>, min_ttl: u64) -> bool {
    let Some(expires_at) = expires_at else {
        return true;
    };
    if expires_at <= now {
        return false;
    }
    let min_ttl = i64::try_from(min_ttl).unwrap_or(i64::MAX);
    if expires_at.saturating_sub(now) > min_ttl {
        return true;
    }
    let lifetime = expires_at.saturating_sub(issued_at);
    // `2 * elapsed < lifetime` avoids rounding the half lifetime down.
    now.saturating_sub(issued_at).saturating_mul(2) < lifetime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lived_token_is_fresh_until_min_ttl() {
        // Issued at 0, lives 3600 s, min_ttl 60.
        assert!(is_fresh_enough(0, 0, Some(3600), 60));
        assert!(is_fresh_enough(3539, 0, Some(3600), 60));
        assert!(!is_fresh_enough(3540, 0, Some(3600), 60));
        assert!(!is_fresh_enough(3600, 0, Some(3600), 60));
        assert!(!is_fresh_enough(9999, 0, Some(3600), 60));
    }

    #[test]
    fn short_lived_token_is_fresh_for_half_its_life() {
        // Lives 30 s, shorter than min_ttl 60: fresh for the first half only.
        assert!(is_fresh_enough(100, 100, Some(130), 60));
        assert!(is_fresh_enough(114, 100, Some(130), 60));
        assert!(!is_fresh_enough(115, 100, Some(130), 60));
        assert!(!is_fresh_enough(129, 100, Some(130), 60));
    }

    #[test]
    fn unknown_expiry_is_served_and_expired_never() {
        assert!(is_fresh_enough(5, 0, None, 60));
        assert!(!is_fresh_enough(10, 0, Some(10), 0));
        // A clock that went backwards (issued in the future) still serves an unexpired token.
        assert!(is_fresh_enough(0, 50, Some(100), 10));
    }

    #[test]
    fn huge_min_ttl_does_not_overflow() {
        assert!(is_fresh_enough(0, 0, Some(100), u64::MAX));
        assert!(!is_fresh_enough(60, 0, Some(100), u64::MAX));
    }
}
