//! What keeps one client from spending the node's memory or its chain budget at the expense of
//! other clients:
//!
//! - [`ReplayGuard`]: the re-encryption requests served recently, by policy. Each policy has its
//!   own quota, so a policy's Bob can only fill his own; entries are forgotten by expiry bucket.
//! - [`RateLimiter`]: a token bucket per client address, for requests that cost a chain call.
//! - [`UnknownPolicies`]: policy ids the chain did not know a moment ago.
//!
//! None of them has a global count that, once exhausted, would refuse everyone: the maps that
//! could grow with the number of clients forget their oldest entries in bulk ([`Recent`]), and
//! forgetting only ever makes the node more lenient to the client forgotten.
//!
//! Every operation is O(1) amortized: nothing scans a whole map on the request path.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::Hash,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Width of the replay guard's expiry buckets, in seconds: entries are forgotten a bucket at a
/// time, at most this long after they expired.
pub(crate) const REPLAY_BUCKET_SECS: u64 = 5;

/// Policy ids remembered as unknown, per generation of [`Recent`] (so at most twice as many).
pub(crate) const UNKNOWN_POLICIES_CAPACITY: usize = 10_000;

/// Client addresses with a token bucket, per generation of [`Recent`] (so at most twice as many).
pub(crate) const RATE_LIMITED_CLIENTS_CAPACITY: usize = 10_000;

/// A map that forgets its least recently used entries in bulk. It holds two generations: when
/// the current one reaches `capacity`, it becomes the previous one and the old previous one is
/// dropped; an entry found in the previous generation moves back to the current one. So it holds
/// at most `2 * capacity` entries, keeps every entry used in the last `capacity` insertions, and
/// costs O(1) amortized per operation (each entry is dropped once).
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
    capacity: usize,
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
}

impl<K: Hash + Eq + Copy, V> Recent<K, V> {
    /// An empty map keeping at least the `capacity` (at least 1) most recently used entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// The entry of `key`, made by `make` if there is none.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if self.current.contains_key(&key) {
            return self.current.entry(key).or_insert_with(make);
        }
        let value = self.previous.remove(&key).unwrap_or_else(make);
        self.make_room();
        self.current.entry(key).or_insert(value)
    }

    /// The entry of `key`, if it is remembered.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        if !self.current.contains_key(key) {
            let value = self.previous.remove(key)?;
            self.make_room();
            self.current.insert(*key, value);
        }
        self.current.get(key)
    }

    /// Remembers `value` for `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.previous.remove(&key);
        if !self.current.contains_key(&key) {
            self.make_room();
        }
        self.current.insert(key, value);
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, key: &K) {
        self.current.remove(key);
        self.previous.remove(key);
    }

    /// How many entries are held (both generations).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    fn make_room(&mut self) {
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
    }
}

/// What the replay guard says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Not seen before: remembered now, serve it.
    New,
    /// The same message was served already.
    Replay,
    /// The policy has its quota of remembered requests; one is forgotten in `retry_after_secs`.
    OverQuota {
        /// Seconds until the policy's oldest bucket of requests is forgotten.
        retry_after_secs: u64,
    },
}

/// One policy's remembered requests.
#[derive(Debug, Default)]
struct PolicyReplays {
    seen: HashSet<[u8; 32]>,
    /// The same digests by expiry bucket, to forget a bucket's together.
    by_bucket: BTreeMap<u64, Vec<[u8; 32]>>,
}

/// The re-encryption requests served recently, by the digest of their signed message, until
/// their timestamp is outside the clock window anyway (then the timestamp check refuses them).
///
/// Each policy may have at most `quota` requests remembered; a policy over it is refused
/// ([`Admission::OverQuota`]) while every other policy is served. Only requests that passed the
/// signature check of a policy whose kfrag the node holds get here, so the policies with entries
/// are at most the kfrags held (plus those deleted within the last clock window), and memory is
/// at most `quota` × that number of entries.
#[derive(Debug)]
pub(crate) struct ReplayGuard {
    quota: usize,
    policies: HashMap<[u8; 16], PolicyReplays>,
    /// The policies with entries in each expiry bucket (bucket `b` holds the entries expiring in
    /// `[b * W, (b + 1) * W)`, `W` = [`REPLAY_BUCKET_SECS`]).
    buckets: BTreeMap<u64, Vec<[u8; 16]>>,
}

impl ReplayGuard {
    /// A guard remembering at most `quota` (at least 1) requests per policy.
    pub(crate) fn new(quota: usize) -> Self {
        Self {
            quota: quota.max(1),
            policies: HashMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// Remembers the request `digest` of `policy` until `expires` (Unix seconds), unless it is a
    /// replay or the policy is over its quota. `now` is the clock (Unix seconds).
    pub(crate) fn admit(
        &mut self,
        policy: [u8; 16],
        digest: [u8; 32],
        expires: u64,
        now: u64,
    ) -> Admission {
        self.forget_expired(now);
        let quota = self.quota;
        let replays = self.policies.entry(policy).or_default();
        if replays.seen.contains(&digest) {
            return Admission::Replay;
        }
        if replays.seen.len() >= quota {
            let oldest = replays.by_bucket.keys().next().copied();
            let retry_after_secs = oldest.map_or(REPLAY_BUCKET_SECS, |bucket| {
                bucket_end(bucket).saturating_sub(now).max(1)
            });
            return Admission::OverQuota { retry_after_secs };
        }
        let bucket = expires / REPLAY_BUCKET_SECS;
        replays.seen.insert(digest);
        let digests = replays.by_bucket.entry(bucket).or_default();
        if digests.is_empty() {
            self.buckets.entry(bucket).or_default().push(policy);
        }
        digests.push(digest);
        Admission::New
    }

    /// Drops every bucket whose entries have all expired: each entry is dropped once, so this is
    /// O(1) amortized per admitted request.
    fn forget_expired(&mut self, now: u64) {
        while let Some(entry) = self.buckets.first_entry() {
            let bucket = *entry.key();
            // An entry is kept while `now <= expires`: a request at exactly `timestamp + skew`
            // still passes the timestamp check.
            if bucket_end(bucket) > now {
                break;
            }
            for policy in entry.remove() {
                if let Some(replays) = self.policies.get_mut(&policy) {
                    for digest in replays.by_bucket.remove(&bucket).unwrap_or_default() {
                        replays.seen.remove(&digest);
                    }
                    if replays.seen.is_empty() {
                        self.policies.remove(&policy);
                    }
                }
            }
        }
    }

    /// How many requests are remembered for `policy`.
    #[cfg(test)]
    fn remembered(&self, policy: [u8; 16]) -> usize {
        self.policies.get(&policy).map_or(0, |p| p.seen.len())
    }
}

/// The first second after bucket `bucket`'s entries have all expired.
fn bucket_end(bucket: u64) -> u64 {
    bucket.saturating_add(1).saturating_mul(REPLAY_BUCKET_SECS)
}

/// A client's token bucket.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

/// Who a client is for rate limiting: its IP address, an IPv6 address reduced to its /64 (one
/// host usually has a whole /64); `None` when the connection's address is not known (requests
/// handed to the router in process, without a listener), which all count as one client.
pub(crate) type ClientKey = Option<IpAddr>;

/// The [`ClientKey`] of a peer address.
pub(crate) fn client_key(ip: Option<IpAddr>) -> ClientKey {
    ip.map(|ip| match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    })
}

/// A token bucket per client: `burst` requests at once, then `per_minute` a minute. A client
/// forgotten by [`Recent`] comes back with a full bucket: forgetting is lenient, never a refusal
/// of someone else.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    clients: Recent<ClientKey, TokenBucket>,
}

impl RateLimiter {
    /// A limiter of `per_minute` requests a minute with bursts of `burst` (at least 1) per
    /// client, for up to `2 * capacity` clients at once.
    pub(crate) fn new(per_minute: u32, burst: u32, capacity: usize) -> Self {
        Self {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            clients: Recent::new(capacity),
        }
    }

    /// Takes a token of `client`'s bucket at `now`; if there is none, how long until there is.
    pub(crate) fn check(&mut self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let (per_sec, burst) = (self.per_sec, self.burst);
        let bucket = self.clients.get_or_insert_with(client, || TokenBucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        if per_sec <= 0.0 {
            // No refill configured: only the burst, ever (per client, until forgotten).
            return Err(Duration::from_secs(60));
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
    }
}

/// Policy ids the chain did not know, remembered for `ttl` so that uploads naming them again
/// are refused without a chain call. The entry expires because a policy may be created later
/// (or the node's RPC endpoint may be a block behind the client's).
#[derive(Debug)]
pub(crate) struct UnknownPolicies {
    ttl: Duration,
    until: Recent<[u8; 16], Instant>,
}

impl UnknownPolicies {
    /// Remembers unknown ids for `ttl` (zero: never), up to `2 * capacity` ids at once.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            until: Recent::new(capacity),
        }
    }

    /// Whether `policy` was found unknown less than `ttl` before `now`.
    pub(crate) fn is_unknown(&mut self, policy: [u8; 16], now: Instant) -> bool {
        match self.until.get(&policy) {
            Some(&until) if now < until => true,
            Some(_) => {
                self.until.remove(&policy);
                false
            }
            None => false,
        }
    }

    /// Remembers that the chain did not know `policy` at `now`.
    pub(crate) fn remember(&mut self, policy: [u8; 16], now: Instant) {
        if !self.ttl.is_zero() {
            self.until.insert(policy, now + self.ttl);
        }
    }

    /// The time an unknown id is remembered.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn digest(n: u32) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&n.to_be_bytes());
        d
    }

    #[test]
    fn a_policy_over_its_quota_is_refused_alone() {
        let (flooder, other) = ([1u8; 16], [2u8; 16]);
        let now = 1_000_000;
        let mut guard = ReplayGuard::new(3);
        for n in 0..3 {
            assert_eq!(
                guard.admit(flooder, digest(n), now + 300, now),
                Admission::New
            );
        }
        assert!(matches!(
            guard.admit(flooder, digest(3), now + 300, now),
            Admission::OverQuota { retry_after_secs } if retry_after_secs >= 300
        ));
        // A replay is still a replay, over quota or not.
        assert_eq!(
            guard.admit(flooder, digest(0), now + 300, now),
            Admission::Replay
        );
        // Another policy is not affected, and has the same quota of its own.
        for n in 0..3 {
            assert_eq!(
                guard.admit(other, digest(n), now + 300, now),
                Admission::New
            );
        }
        assert_eq!(
            guard.admit(other, digest(1), now + 300, now),
            Admission::Replay
        );
    }

    #[test]
    fn entries_are_kept_until_they_expire_then_forgotten_by_bucket() {
        let policy = [7u8; 16];
        let now = 1_000_000;
        let mut guard = ReplayGuard::new(2);
        let expires = now + 300;
        assert_eq!(guard.admit(policy, digest(0), expires, now), Admission::New);
        assert_eq!(
            guard.admit(policy, digest(1), expires + 100, now),
            Admission::New
        );
        let Admission::OverQuota { retry_after_secs } =
            guard.admit(policy, digest(2), expires, now)
        else {
            panic!("over quota expected");
        };
        // Retry-After points past the first bucket, and not before the entry expires.
        assert!(now + retry_after_secs > expires);
        assert!(retry_after_secs <= 300 + REPLAY_BUCKET_SECS);
        // Still remembered at its expiry second.
        assert_eq!(
            guard.admit(policy, digest(0), expires, expires),
            Admission::Replay
        );
        // Forgotten once its bucket has passed; the later one stays.
        let later = now + retry_after_secs;
        assert_eq!(
            guard.admit(policy, digest(2), later + 300, later),
            Admission::New
        );
        assert_eq!(guard.remembered(policy), 2);
        assert_eq!(
            guard.admit(policy, digest(1), later + 300, later),
            Admission::Replay
        );
        // Everything expired: the policy's entry is dropped altogether.
        let much_later = later + 1000;
        guard.forget_expired(much_later);
        assert!(guard.policies.is_empty() && guard.buckets.is_empty());
    }

    #[test]
    fn token_bucket_per_client() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(60, 2, 100);
        let (a, b) = (
            client_key(Some("10.0.0.1".parse().unwrap())),
            client_key(Some("10.0.0.2".parse().unwrap())),
        );
        assert!(limiter.check(a, start).is_ok());
        assert!(limiter.check(a, start).is_ok());
        let wait = limiter.check(a, start).err();
        assert!(wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_secs(1)));
        assert!(limiter.check(b, start).is_ok(), "another client is served");
        // One token a second.
        assert!(limiter.check(a, start + Duration::from_secs(1)).is_ok());
        assert!(limiter.check(a, start + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        let one = client_key("2001:db8:1:2:aaaa::1".parse().ok());
        let two = client_key("2001:db8:1:2:bbbb::2".parse().ok());
        let other = client_key("2001:db8:1:3::1".parse().ok());
        assert_eq!(one, two);
        assert_ne!(one, other);
        let mapped = client_key("::ffff:10.0.0.1".parse().ok());
        assert_eq!(mapped, client_key("10.0.0.1".parse().ok()));
    }

    #[test]
    fn recent_keeps_recent_entries_and_is_bounded() {
        let mut recent = Recent::new(4);
        for k in 0..4u32 {
            recent.insert(k, k);
        }
        // Used again: moves to the current generation.
        assert_eq!(recent.get(&0), Some(&0));
        for k in 4..100u32 {
            recent.insert(k, k);
            assert!(recent.len() <= 8);
        }
        assert_eq!(recent.get(&99), Some(&99));
        assert_eq!(recent.get(&0), None);
    }

    #[test]
    fn unknown_policies_expire() {
        let start = Instant::now();
        let mut unknown = UnknownPolicies::new(Duration::from_secs(5), 10);
        assert!(!unknown.is_unknown([1; 16], start));
        unknown.remember([1; 16], start);
        assert!(unknown.is_unknown([1; 16], start + Duration::from_secs(4)));
        assert!(!unknown.is_unknown([1; 16], start + Duration::from_secs(5)));
        let mut never = UnknownPolicies::new(Duration::ZERO, 10);
        never.remember([1; 16], start);
        assert!(!never.is_unknown([1; 16], start));
    }
}
