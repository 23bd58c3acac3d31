//! Pure expiry rules (docs/behaviour.md, "Fresh enough"). No clock is read here:
//! callers pass `now`, so the rules are exhaustively testable.

/// Whether an access token may be served without a refresh.
///
/// A token is fresh enough when it expires more than `min_ttl` seconds
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

/// Whether a long-lived process should refresh ahead of need, and if so the
/// `min_ttl` to refresh with: when less than max(60 s, 20% of the lifetime) is left,
/// but never before half the lifetime has passed (so short-lived tokens never cause
/// a refresh loop). `None` when not due.
pub fn refresh_ahead(now: i64, issued_at: i64, expires_at: i64) -> Option<u64> {
    let lifetime = u64::try_from(expires_at.saturating_sub(issued_at)).unwrap_or(0);
    let threshold = (lifetime / 5).max(60);
    (!is_fresh_enough(now, issued_at, Some(expires_at), threshold)).then_some(threshold)
}

/// The lifetime given to a token whose `expires_in` is zero or negative, which
/// would otherwise make every call refresh (zero) or never expire (negative). A
/// short positive lifetime is the provider's to choose and is kept: the half-life
/// rule already keeps it from causing a refresh on every call.
pub const MIN_LIFETIME: i64 = 60;
/// The longest: ten years. Some providers send `Long.MAX_VALUE` for "never"; past
/// this it could not even be written as a date.
pub const MAX_LIFETIME: i64 = 10 * 365 * 24 * 3600;

/// When a token issued at `now` with the provider's `expires_in` expires, by the
/// engine's bound: absent means unknown (served as is, never refreshed ahead, as
/// for providers whose tokens do not expire); zero or negative counts as
/// [`MIN_LIFETIME`]; more than [`MAX_LIFETIME`] counts as that.
pub fn expires_at(now: i64, expires_in: Option<i64>) -> Option<i64> {
    expires_in.map(|e| {
        let lifetime = if e <= 0 {
            MIN_LIFETIME
        } else {
            e.min(MAX_LIFETIME)
        };
        now.saturating_add(lifetime)
    })
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
    fn refresh_ahead_at_a_fifth_of_the_lifetime_or_a_minute() {
        // One hour: due with 12 minutes (720 s) left.
        assert_eq!(refresh_ahead(0, 0, 3600), None);
        assert_eq!(refresh_ahead(2879, 0, 3600), None);
        assert_eq!(refresh_ahead(2880, 0, 3600), Some(720));
        // Five minutes: the 60 s floor.
        assert_eq!(refresh_ahead(239, 0, 300), None);
        assert_eq!(refresh_ahead(240, 0, 300), Some(60));
        // Thirty seconds: never before half the lifetime, whatever the floor says.
        assert_eq!(refresh_ahead(14, 0, 30), None);
        assert_eq!(refresh_ahead(15, 0, 30), Some(60));
    }

    #[test]
    fn provider_lifetimes_are_bounded() {
        let now = 1_000_000;
        assert_eq!(expires_at(now, None), None);
        assert_eq!(expires_at(now, Some(3600)), Some(now + 3600));
        assert_eq!(
            expires_at(now, Some(2)),
            Some(now + 2),
            "short is the provider's call"
        );
        assert_eq!(expires_at(now, Some(0)), Some(now + MIN_LIFETIME));
        assert_eq!(expires_at(now, Some(-5)), Some(now + MIN_LIFETIME));
        assert_eq!(expires_at(now, Some(i64::MIN)), Some(now + MIN_LIFETIME));
        assert_eq!(
            expires_at(now, Some(1_000_000_000_000_000_000)),
            Some(now + MAX_LIFETIME)
        );
        assert_eq!(expires_at(i64::MAX, Some(i64::MAX)), Some(i64::MAX));
        // A clamped short lifetime never refreshes more than once per half-life.
        let issued = now;
        let e = expires_at(issued, Some(0)).unwrap();
        assert!(is_fresh_enough(issued + 29, issued, Some(e), 60));
        assert_eq!(refresh_ahead(issued + 29, issued, e), None);
    }

    #[test]
    fn huge_min_ttl_does_not_overflow() {
        assert!(is_fresh_enough(0, 0, Some(100), u64::MAX));
        assert!(!is_fresh_enough(60, 0, Some(100), u64::MAX));
    }
}
