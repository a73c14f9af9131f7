//===----------------------------------------------------------------------===//
// CShims: the thin C layer under Apus.
//
// Each function here exists because Swift cannot import or call the C API directly
// (a GNU extension, a function-like macro, a packed struct) or because one call
// site in C is clearer than the same dance repeated in Swift. Functions return
// 0 or a count on success and -errno on failure; they never log and never abort.
//===----------------------------------------------------------------------===//
#ifndef CSHIMS_H
#define CSHIMS_H

#include <stddef.h>
#include <stdint.h>

// MARK: - Random bytes and constant-time comparison

/// Fills `buf` with `len` cryptographically strong random bytes (OpenSSL RAND_bytes,
/// falling back to getrandom(2)). Returns 0, or -1 when no strong source answered.
/// Why: Glibc's getrandom is not in Swift's Glibc module on every libc, and we want one
/// CSPRNG for salts, session ids and TLS together.
int cshim_random_bytes(void *buf, size_t len);

/// Compares `len` bytes in time that does not depend on where they differ
/// (CRYPTO_memcmp). Returns 0 when equal. Why: password and token checks must not leak
/// the position of the first differing byte through timing.
int cshim_constant_time_compare(const void *a, const void *b, size_t len);

// MARK: - Password hashing (libcrypt)

/// Hashes `phrase` with the crypt(3) `setting` (e.g. "$6$salt", "$y$j9T$salt", or a whole
/// stored hash to verify against) into `out` (NUL-terminated). Returns the hash length,
/// or -EINVAL when libcrypt rejected the setting. Why: crypt_rn is reentrant (safe on
/// worker threads) but lives in <crypt.h>, which Swift's Glibc module does not import.
int cshim_crypt(const char *phrase, const char *setting, char *out, size_t out_len);

/// Makes a crypt(3) setting string with a fresh random salt for `prefix` ("$6$" for
/// SHA512-CRYPT, "$y$" for yescrypt) into `out`. Returns its length or -EINVAL.
/// Why: crypt_gensalt_rn is libcrypt-only, like cshim_crypt.
int cshim_crypt_gensalt(const char *prefix, unsigned long count, char *out, size_t out_len);

/// PBKDF2-HMAC with the named digest ("SHA512", "SHA1", "SHA256") into `out`.
/// Returns 0, or -EINVAL for an unknown digest or a failed derivation. Why: the OpenSSL
/// headers are included only in C files, and EVP digest lookup by name is a macro maze.
int cshim_pbkdf2_hmac(const char *digest_name, const void *password, size_t password_len,
                      const void *salt, size_t salt_len, unsigned iterations,
                      void *out, size_t out_len);

/// One-shot message digest ("SHA512", "SHA256", "SHA1", "MD5") of `data` into `out`, which
/// must hold 64 bytes. Returns the digest length or -EINVAL. Why: as cshim_pbkdf2_hmac; used
/// for Dovecot's {SHA512}/{SSHA512}-style schemes and for salted credential-cache keys.
int cshim_digest(const char *digest_name, const void *data, size_t len, void *out);

#endif
