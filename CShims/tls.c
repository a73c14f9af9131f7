// Non-blocking TLS over OpenSSL: see CShims.h for why each wrapper exists.
// cshim_tls_context, cshim_tls and cshim_tls_session are SSL_CTX, SSL and SSL_SESSION.
#ifndef _GNU_SOURCE
#error You must define _GNU_SOURCE
#endif
#include "CShims.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* OpenSSL wants the thread's error queue empty before each I/O call, or SSL_get_error can
   misreport. Looking at the queue costs as much as a small record (ERR_peek_error is about 2%
   of an echo's instructions), so instead every shim keeps it empty: each failure path drains
   what it reported (capture_error, set_err, and the C functions in random.c), and the I/O
   calls below do not clear it first. */
// The last fatal error's text, per thread: OpenSSL's queue is per thread and is cleared
// before every call, so it is captured at the moment of failure.
static __thread char last_error[256];

static void capture_error(const char *context) {
    unsigned long code = ERR_get_error();
    if (code != 0) {
        char text[200];
        ERR_error_string_n(code, text, sizeof text);
        snprintf(last_error, sizeof last_error, "%s: %s", context, text);
    } else if (errno != 0) {
        snprintf(last_error, sizeof last_error, "%s: %s", context, strerror(errno));
    } else {
        snprintf(last_error, sizeof last_error, "%s: unknown error", context);
    }
    ERR_clear_error();
}

void cshim_tls_last_error(char *out, size_t out_len) {
    if (out_len == 0) return;
    snprintf(out, out_len, "%s", last_error);
}

static void set_err(char *err, size_t err_len, const char *context) {
    capture_error(context);
    if (err != NULL && err_len > 0) snprintf(err, err_len, "%s", last_error);
}

// MARK: - ALPN list kept with its context

// The wire-format ALPN list lives in the context's ex_data, so it is freed exactly when the
// last connection using the context is gone (a reload may free our reference earlier).
static int alpn_index = -1;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;

typedef struct alpn_list {
    size_t len;
    unsigned char bytes[];
} alpn_list;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    free(ptr);
}

static void alpn_index_init(void) {
    alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *out_len, const unsigned char *in,
                       unsigned int in_len, void *arg) {
    (void)arg;
    alpn_list *list = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index);
    if (list == NULL) return SSL_TLSEXT_ERR_NOACK;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, out_len, list->bytes, (unsigned)list->len, in, in_len) !=
        OPENSSL_NPN_NEGOTIATED)
        // A client that offers only other protocols is refused (RFC 7301 3.2), which closes
        // the door on cross-protocol attacks (ALPACA) against this certificate.
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static int attach_alpn(SSL_CTX *ctx, int is_server, const unsigned char *alpn, size_t alpn_len) {
    if (alpn == NULL || alpn_len == 0) return 1;
    if (!is_server) return SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alpn_len) == 0;
    pthread_once(&alpn_once, alpn_index_init);
    alpn_list *list = malloc(sizeof *list + alpn_len);
    if (list == NULL) return 0;
    list->len = alpn_len;
    memcpy(list->bytes, alpn, alpn_len);
    if (!SSL_CTX_set_ex_data(ctx, alpn_index, list)) {
        free(list);
        return 0;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return 1;
}

// MARK: - SNI: per-name alternative contexts, kept with their context like the ALPN list

typedef struct sni_entry {
    char *name;
    SSL_CTX *ctx;
    struct sni_entry *next;
} sni_entry;

static int sni_index = -1;
static pthread_once_t sni_once = PTHREAD_ONCE_INIT;

static void sni_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    for (sni_entry *entry = ptr; entry != NULL;) {
        sni_entry *next = entry->next;
        free(entry->name);
        SSL_CTX_free(entry->ctx);
        free(entry);
        entry = next;
    }
}

static void sni_index_init(void) { sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_free); }

static int sni_select(SSL *ssl, int *alert, void *arg) {
    (void)alert; (void)arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL) return SSL_TLSEXT_ERR_OK;
    for (sni_entry *entry = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sni_index); entry != NULL; entry = entry->next) {
        if (strcasecmp(entry->name, name) == 0) {
            SSL_set_SSL_CTX(ssl, entry->ctx);
            break;
        }
    }
    // An unknown name gets the default certificate, as most mail servers do.
    return SSL_TLSEXT_ERR_OK;
}

int cshim_tls_server_context_add_name(cshim_tls_context *ctx, const char *server_name,
                                      cshim_tls_context *alternative) {
    pthread_once(&sni_once, sni_index_init);
    sni_entry *entry = calloc(1, sizeof *entry);
    if (entry == NULL || (entry->name = strdup(server_name)) == NULL) {
        free(entry);
        return -ENOMEM;
    }
    SSL_CTX_up_ref((SSL_CTX *)alternative);
    entry->ctx = (SSL_CTX *)alternative;
    entry->next = SSL_CTX_get_ex_data((SSL_CTX *)ctx, sni_index);
    SSL_CTX_set_ex_data((SSL_CTX *)ctx, sni_index, entry);
    SSL_CTX_set_tlsext_servername_callback((SSL_CTX *)ctx, sni_select);
    return 0;
}

// MARK: - Contexts

static SSL_CTX *new_context(const SSL_METHOD *method) {
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // Partial writes: SSL_write returns after each record, so a slow peer cannot make us
    // buffer a whole message inside OpenSSL. Moving buffers: Swift arrays may move between
    // retries. Release buffers: idle connections (IDLE sessions) keep no 34 KiB of buffers.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // A peer that closes without close_notify is a plain close for IMAP, not an error.
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

cshim_tls_context *cshim_tls_server_context(const char *cert_chain_path, const char *key_path,
                                            const unsigned char *alpn, size_t alpn_len, char *err,
                                            size_t err_len) {
    ERR_clear_error();
    errno = 0;
    SSL_CTX *ctx = new_context(TLS_server_method());
    if (ctx == NULL) {
        set_err(err, err_len, "SSL_CTX_new");
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_chain_path) != 1) {
        set_err(err, err_len, cert_chain_path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, err_len, key_path);
        SSL_CTX_free(ctx);
        return NULL;
    }
    static const unsigned char session_context[] = "apus";
    SSL_CTX_set_session_id_context(ctx, session_context, sizeof session_context - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (!attach_alpn(ctx, 1, alpn, alpn_len)) {
        set_err(err, err_len, "ALPN");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return (cshim_tls_context *)ctx;
}

cshim_tls_context *cshim_tls_client_context(int verify, const char *ca_file, const unsigned char *alpn,
                                            size_t alpn_len, char *err, size_t err_len) {
    ERR_clear_error();
    errno = 0;
    SSL_CTX *ctx = new_context(TLS_client_method());
    if (ctx == NULL) {
        set_err(err, err_len, "SSL_CTX_new");
        return NULL;
    }
    if (verify) {
        int loaded = ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                     : SSL_CTX_set_default_verify_paths(ctx);
        if (loaded != 1) {
            set_err(err, err_len, ca_file != NULL ? ca_file : "default CA paths");
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    // Sessions are kept by the caller (cshim_tls_get_session) per destination, not in an
    // internal cache shared by every destination.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (!attach_alpn(ctx, 0, alpn, alpn_len)) {
        set_err(err, err_len, "ALPN");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return (cshim_tls_context *)ctx;
}

void cshim_tls_context_free(cshim_tls_context *ctx) { SSL_CTX_free((SSL_CTX *)ctx); }

// MARK: - Connections

static int is_numeric_host(const char *name) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

cshim_tls *cshim_tls_new(cshim_tls_context *ctx, int fd, int is_server, const char *server_name,
                         cshim_tls_session *session) {
    ERR_clear_error();
    SSL *ssl = SSL_new((SSL_CTX *)ctx);
    if (ssl == NULL) {
        capture_error("SSL_new");
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        capture_error("SSL_set_fd");
        SSL_free(ssl);
        return NULL;
    }
    if (is_server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (server_name != NULL && server_name[0] != '\0') {
            // SNI carries host names only (RFC 6066 3); an address is still checked below.
            if (!is_numeric_host(server_name)) SSL_set_tlsext_host_name(ssl, server_name);
            if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
                int ok = is_numeric_host(server_name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name)
                                                      : SSL_set1_host(ssl, server_name);
                if (ok != 1) {
                    capture_error("host name check");
                    SSL_free(ssl);
                    return NULL;
                }
            }
        }
        if (session != NULL) SSL_set_session(ssl, (SSL_SESSION *)session);
    }
    return (cshim_tls *)ssl;
}

void cshim_tls_free(cshim_tls *tls) { SSL_free((SSL *)tls); }

/* Maps a failed SSL call's return value to WANT_READ / WANT_WRITE / CLOSED / ERROR. */
static int map_result(SSL *ssl, int ret, const char *context) {
    int code = SSL_get_error(ssl, ret);
    switch (code) {
    case SSL_ERROR_WANT_READ:
        return CSHIM_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return CSHIM_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return CSHIM_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET || errno == EPIPE)) {
            snprintf(last_error, sizeof last_error, "%s: connection closed by peer", context);
            return CSHIM_TLS_CLOSED;
        }
        capture_error(context);
        return CSHIM_TLS_ERROR;
    default:
        capture_error(context);
        return CSHIM_TLS_ERROR;
    }
}

int cshim_tls_handshake(cshim_tls *tls) {
    SSL *ssl = (SSL *)tls;
    errno = 0;
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) return 0;
    int mapped = map_result(ssl, ret, "handshake");
    // A close during the handshake is a failed handshake, and says why.
    if (mapped == CSHIM_TLS_CLOSED && SSL_get_verify_result(ssl) != X509_V_OK) {
        snprintf(last_error, sizeof last_error, "handshake: certificate verify failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
        return CSHIM_TLS_ERROR;
    }
    return mapped;
}

int cshim_tls_read(cshim_tls *tls, void *buf, size_t len) {
    SSL *ssl = (SSL *)tls;
    if (len > 0x7fffffff) len = 0x7fffffff;
    errno = 0;
    int ret = SSL_read(ssl, buf, (int)len);
    return ret > 0 ? ret : map_result(ssl, ret, "read");
}

int cshim_tls_write(cshim_tls *tls, const void *buf, size_t len) {
    SSL *ssl = (SSL *)tls;
    if (len > 0x7fffffff) len = 0x7fffffff;
    errno = 0;
    int ret = SSL_write(ssl, buf, (int)len);
    return ret > 0 ? ret : map_result(ssl, ret, "write");
}

int cshim_tls_shutdown(cshim_tls *tls) {
    SSL *ssl = (SSL *)tls;
    errno = 0;
    int ret = SSL_shutdown(ssl);
    if (ret >= 0) return 0; // 0: our close_notify is out; we do not wait for the peer's
    return map_result(ssl, ret, "shutdown");
}

int cshim_tls_pending(cshim_tls *tls) { return SSL_pending((SSL *)tls); }
int cshim_tls_fd(cshim_tls *tls) { return SSL_get_fd((SSL *)tls); }
const char *cshim_tls_version(cshim_tls *tls) { return SSL_get_version((SSL *)tls); }

const char *cshim_tls_server_name(cshim_tls *tls) {
    return SSL_get_servername((SSL *)tls, TLSEXT_NAMETYPE_host_name);
}

const unsigned char *cshim_tls_alpn(cshim_tls *tls, unsigned *len) {
    const unsigned char *data = NULL;
    SSL_get0_alpn_selected((SSL *)tls, &data, len);
    return data;
}

cshim_tls_session *cshim_tls_get_session(cshim_tls *tls) {
    SSL_SESSION *session = SSL_get1_session((SSL *)tls);
    if (session != NULL && !SSL_SESSION_is_resumable(session)) {
        SSL_SESSION_free(session);
        return NULL;
    }
    return (cshim_tls_session *)session;
}

void cshim_tls_session_free(cshim_tls_session *session) { SSL_SESSION_free((SSL_SESSION *)session); }
int cshim_tls_session_reused(cshim_tls *tls) { return SSL_session_reused((SSL *)tls); }

// MARK: - Self-signed certificate

static int add_extension(X509 *cert, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

int cshim_tls_make_self_signed(const char *cert_path, const char *key_path, const char *common_name, int days,
                               char *err, size_t err_len) {
    ERR_clear_error();
    errno = 0;
    int result = -1;
    X509 *cert = NULL;
    FILE *key_file = NULL, *cert_file = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL) {
        set_err(err, err_len, "EC key generation");
        goto done;
    }
    cert = X509_new();
    unsigned char serial[16];
    if (cert == NULL || RAND_bytes(serial, sizeof serial) != 1) {
        set_err(err, err_len, "X509_new");
        goto done;
    }
    serial[0] &= 0x7f; // a positive serial number
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400L);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Apus", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0);
    X509_set_issuer_name(cert, name);
    char san[512];
    snprintf(san, sizeof san, "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", common_name);
    // Like `openssl req -x509`: a CA-flagged self-signed certificate, which clients accept as
    // their own trust anchor (curl --cacert, Python's cafile) under strict verification.
    if (!add_extension(cert, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_extension(cert, NID_subject_key_identifier, "hash") ||
        !add_extension(cert, NID_authority_key_identifier, "keyid:always") ||
        !add_extension(cert, NID_subject_alt_name, san) || X509_sign(cert, key, EVP_sha256()) == 0) {
        set_err(err, err_len, "certificate signing");
        goto done;
    }
    int key_fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (key_fd < 0 || (key_file = fdopen(key_fd, "w")) == NULL) {
        if (key_fd >= 0) close(key_fd);
        set_err(err, err_len, key_path);
        goto done;
    }
    if (PEM_write_PrivateKey(key_file, key, NULL, NULL, 0, NULL, NULL) != 1) {
        set_err(err, err_len, key_path);
        goto done;
    }
    cert_file = fopen(cert_path, "we");
    if (cert_file == NULL || PEM_write_X509(cert_file, cert) != 1) {
        set_err(err, err_len, cert_path);
        goto done;
    }
    result = 0;
done:
    if (key_file != NULL && fclose(key_file) != 0 && result == 0) {
        set_err(err, err_len, key_path);
        result = -1;
    }
    if (cert_file != NULL && fclose(cert_file) != 0 && result == 0) {
        set_err(err, err_len, cert_path);
        result = -1;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return result;
}
