// Random bytes, constant-time comparison and crypt(3): see CShims.h for why each exists.
#ifndef _GNU_SOURCE
#error You must define _GNU_SOURCE
#endif
#include "CShims.h"

#include <crypt.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

int cshim_random_bytes(void *buf, size_t len) {
    if (len <= (size_t)0x7fffffff && RAND_bytes(buf, (int)len) == 1) return 0;
    ERR_clear_error(); // keep the thread's queue empty for the TLS shims (see tls.c)
    // OpenSSL's pool can fail only when unseeded; the kernel pool is the fallback.
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cshim_constant_time_compare(const void *a, const void *b, size_t len) {
    return CRYPTO_memcmp(a, b, len) == 0 ? 0 : 1;
}

int cshim_crypt(const char *phrase, const char *setting, char *out, size_t out_len) {
    struct crypt_data data;
    memset(&data, 0, sizeof data);
    char *hash = crypt_rn(phrase, setting, &data, (int)sizeof data);
    // libcrypt marks failure with NULL or a hash starting with '*'.
    if (hash == NULL || hash[0] == '*') return -EINVAL;
    size_t n = strlen(hash);
    if (n + 1 > out_len) return -ENOSPC;
    memcpy(out, hash, n + 1);
    return (int)n;
}

int cshim_crypt_gensalt(const char *prefix, unsigned long count, char *out, size_t out_len) {
    unsigned char entropy[32];
    if (cshim_random_bytes(entropy, sizeof entropy) != 0) return -EIO;
    if (crypt_gensalt_rn(prefix, count, (const char *)entropy, (int)sizeof entropy, out, (int)out_len) == NULL)
        return -EINVAL;
    return (int)strlen(out);
}

#include <openssl/evp.h>

int cshim_pbkdf2_hmac(const char *digest_name, const void *password, size_t password_len,
                      const void *salt, size_t salt_len, unsigned iterations,
                      void *out, size_t out_len) {
    const EVP_MD *md = EVP_get_digestbyname(digest_name);
    if (md == NULL) ERR_clear_error();
    if (md == NULL || password_len > 0x7fffffff || salt_len > 0x7fffffff || out_len > 0x7fffffff) return -EINVAL;
    if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, (int)iterations, md, (int)out_len, out) != 1) {
        ERR_clear_error();
        return -EINVAL;
    }
    return 0;
}

int cshim_digest(const char *digest_name, const void *data, size_t len, void *out) {
    const EVP_MD *md = EVP_get_digestbyname(digest_name);
    unsigned int n = 0;
    if (md == NULL || EVP_Digest(data, len, out, &n, md, NULL) != 1) {
        ERR_clear_error();
        return -EINVAL;
    }
    return (int)n;
}
