// IMAPBackend: password checks off the loop, a cache of recent successes, and slowed failures.

import Glibc
import MailStore
import Reactor
import Synchronization

/// Verifies users against the passwd-file. `verify` runs on a worker thread (hashing is slow by
/// design); the cache lets webmail-style reconnects skip the hash: an entry is keyed by the user and
/// a keyed hash of the password (the key is random per process, so the cache holds no password and
/// nothing reusable), lives `ttl`, and is ignored as soon as the user's stored hash changes, as
/// Dovecot's auth cache does.
final class Authenticator: Sendable {
    private struct CacheEntry {
        var passwordDigest: UInt64
        var storedHash: String
        var expires: Deadline
    }

    private struct FailureRecord {
        var count: Int
        var last: Deadline
    }

    let passwordFile: PasswordFile
    private let ttl: Duration
    private let baseDelay: Duration
    private let maxDelay: Duration
    private let cache = Mutex<[String: CacheEntry]>([:])
    private let failures = Mutex<[String: FailureRecord]>([:])
    /// Random per process: the cache key of a password is worthless outside this process.
    private let salt: (UInt64, UInt64)
    private let cacheHits: Atomic<Int> = Atomic(0)

    init(usersFile: String, ttl: Duration, baseDelay: Duration, maxDelay: Duration) {
        passwordFile = PasswordFile(path: usersFile)
        self.ttl = ttl
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        salt = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))
    }

    /// How many logins the cache answered (for tests and metrics).
    var cacheHitCount: Int { cacheHits.load(ordering: .relaxed) }

    private func digest(_ user: String, _ password: [UInt8]) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(salt.0)
        hasher.combine(user)
        hasher.combine(password)
        hasher.combine(salt.1)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    /// Checks a password against the cache of recent successes only: true when this password of
    /// `user` was verified within the TTL and the user's entry is unchanged. No hash and no read of
    /// the users file (a keyed hash of the password and one stat), so the loop asks it before
    /// handing a login to a worker; false means "ask ``verify(user:password:)``", not "wrong".
    func verifyFromCache(user: String, password: [UInt8]) -> Bool {
        guard ttl > .zero, let entry = passwordFile.entryIfUnchanged(for: user) else { return false }
        return cacheAnswers(user: user, digest: digest(user, password), storedHash: entry.password, now: .now())
    }

    /// Whether the cache holds a live success of `user` with this password digest, made while the
    /// user's stored hash was `storedHash` (a changed entry invalidates it). Counts the hit.
    private func cacheAnswers(user: String, digest: UInt64, storedHash: String, now: Deadline) -> Bool {
        guard ttl > .zero, let cached = cache.withLock({ $0[user] }), cached.passwordDigest == digest,
              cached.storedHash == storedHash, now < cached.expires
        else { return false }
        cacheHits.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// Checks a password. Blocking (reads the passwd-file, may hash): call on a worker.
    func verify(user: String, password: [UInt8]) -> Bool {
        guard let entry = try? passwordFile.entry(for: user) else { return false }
        let key = digest(user, password)
        let now = Deadline.now()
        if cacheAnswers(user: user, digest: key, storedHash: entry.password, now: now) { return true }
        guard PasswordVerifier.verify(password, against: entry.password) else {
            cache.withLock { _ = $0.removeValue(forKey: user) }
            return false
        }
        if ttl > .zero {
            cache.withLock { cache in
                if cache.count > 100_000 { cache.removeAll() }
                cache[user] = CacheEntry(passwordDigest: key, storedHash: entry.password, expires: now.adding(ttl))
            }
        }
        return true
    }

    /// The delay to impose before answering a login from `address` for `user`: zero without recent
    /// failures, then `baseDelay` doubling per failure up to `maxDelay`.
    func delay(address: String, user: String) -> Duration {
        let now = Deadline.now()
        let count = failures.withLock { records in
            [("a:" + address), ("u:" + user)].map { key -> Int in
                guard let record = records[key] else { return 0 }
                // Forget failures older than the longest delay times ten.
                if record.last.adding(maxDelay * 10) < now {
                    records.removeValue(forKey: key)
                    return 0
                }
                return record.count
            }.max() ?? 0
        }
        guard count > 0 else { return .zero }
        var delay = baseDelay
        for _ in 1..<min(count, 30) { delay = delay * 2 }
        return min(delay, maxDelay)
    }

    /// Records a failed login of `user` from `address`.
    func recordFailure(address: String, user: String) {
        let now = Deadline.now()
        failures.withLock { records in
            if records.count > 100_000 { records.removeAll() }
            for key in ["a:" + address, "u:" + user] {
                records[key] = FailureRecord(count: (records[key]?.count ?? 0) + 1, last: now)
            }
        }
    }

    /// Forgets the failures of `user` and `address` after a success.
    func recordSuccess(address: String, user: String) {
        failures.withLock { records in
            records.removeValue(forKey: "a:" + address)
            records.removeValue(forKey: "u:" + user)
        }
    }
}
