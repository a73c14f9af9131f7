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

// MARK: - epoll and eventfd

/// Our own mirror of `struct epoll_event`: glibc's is packed on x86_64, which Swift imports
/// awkwardly. `data` carries (generation << 32 | slot) from the reactor.
typedef struct cshim_epoll_event {
    uint32_t events;
    uint64_t data;
} cshim_epoll_event;

static const uint32_t CSHIM_EPOLLIN = 0x001;
static const uint32_t CSHIM_EPOLLOUT = 0x004;
static const uint32_t CSHIM_EPOLLERR = 0x008;
static const uint32_t CSHIM_EPOLLHUP = 0x010;
static const uint32_t CSHIM_EPOLLRDHUP = 0x2000;
static const uint32_t CSHIM_EPOLLET = 1u << 31;
/// Wake one of the epoll instances watching a shared descriptor, not all (ADD only: MOD
/// refuses it with EINVAL).
static const uint32_t CSHIM_EPOLLEXCLUSIVE = 1u << 28;
static const int CSHIM_EPOLL_CTL_ADD = 1;
static const int CSHIM_EPOLL_CTL_DEL = 2;
static const int CSHIM_EPOLL_CTL_MOD = 3;

/// epoll_create1(EPOLL_CLOEXEC). Why: epoll is not in Swift's Glibc module.
int cshim_epoll_create(void);
/// epoll_ctl with our unpacked event. Returns 0 or -errno.
int cshim_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// epoll_wait into `events` (at most 1024 at a time). Returns the count or -errno (EINTR included:
/// the caller's loop simply goes round again).
int cshim_epoll_wait(int epfd, cshim_epoll_event *events, int max_events, int timeout_ms);

/// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC): the cross-thread wake-up of an event loop.
/// Why: eventfd is not in Swift's Glibc module.
int cshim_eventfd(void);
/// Adds 1 to the eventfd counter (wakes the loop). Returns 0 or -errno; EAGAIN (counter
/// saturated) counts as success, since the loop is already due to wake.
int cshim_eventfd_signal(int fd);
/// Resets the eventfd counter to zero. Returns 0 or -errno.
int cshim_eventfd_drain(int fd);

// MARK: - Sockets

/// A socket address in printable form, filled by accept and getsockname/getpeername.
typedef struct cshim_address {
    char host[64];   // numeric IPv4 or IPv6 text, without brackets
    uint16_t port;
    uint8_t family; // 4 or 6
} cshim_address;

/// Opens a non-blocking, close-on-exec TCP listener on the numeric `host` (IPv4 or IPv6) and
/// `port` (0 for an ephemeral port), with SO_REUSEADDR, and SO_REUSEPORT when `reuse_port` is
/// set (one listener per event loop, the kernel spreading connections). Returns the fd or
/// -errno (-EINVAL for a host that is not a numeric address). Why: one call site for the
/// sockaddr juggling that Swift makes verbose.
int cshim_listen_tcp(const char *host, uint16_t port, int backlog, int reuse_port);

/// Binds (and closes) a TCP socket on `host`:`port` with SO_REUSEADDR but without SO_REUSEPORT,
/// and returns 0 if the address is free or -errno (-EADDRINUSE when any socket listens there).
/// Why: SO_REUSEPORT listeners of the same user silently share a port, so a second server on a
/// busy port would not fail; SO_REUSEADDR keeps a stopped server's TIME_WAIT from blocking it.
int cshim_probe_tcp_address(const char *host, uint16_t port);

/// accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) filling `peer` (may be NULL). Returns the fd or -errno.
/// Why: accept4 is a GNU extension that Swift's Glibc module does not export.
int cshim_accept(int listen_fd, cshim_address *peer);

/// Starts a non-blocking TCP connect to numeric `host`:`port`, binding first to
/// `source_host` (numeric, may be NULL) so a load generator can use several source addresses.
/// Returns the fd; `*in_progress` is 1 while the connection completes in the background
/// (wait for writability, then call cshim_socket_error). Returns -errno on failure.
int cshim_connect_tcp(const char *host, uint16_t port, const char *source_host, int *in_progress);

/// Opens a non-blocking, close-on-exec UNIX stream listener at `path`, mode 0600 (owner only:
/// the back end trusts whoever connects as it would a trusted proxy). A socket already at
/// `path` is replaced only when it is stale: our own (same euid) and refusing connections, as
/// one left by a crash is. Otherwise nothing is removed and the call fails: -EADDRINUSE (a
/// server still accepts on it), -ENOTSOCK (a file, directory or symlink: never followed),
/// -EPERM (another user's socket), or the probe's errno. The mode is set between bind and
/// listen, when nobody can connect yet, rather than through the process-wide umask other
/// threads may be using. `*device`/`*inode` receive the new file's identity, so a later
/// removal can check the file is still ours. Returns the fd or -errno (-ENAMETOOLONG when
/// `path` does not fit sun_path). Why: sockaddr_un juggling and the stale check, in one place.
int cshim_listen_unix(const char *path, int backlog, uint64_t *device, uint64_t *inode);

/// Starts a non-blocking connect to the UNIX stream socket at `path`, like cshim_connect_tcp
/// (`*in_progress` 1 while it completes; AF_UNIX connects usually finish at once, or fail
/// EAGAIN when the listener's backlog is full). Returns the fd or -errno. Why: a same-host
/// hop over AF_UNIX skips the loopback device and two TCP stacks per message.
int cshim_connect_unix(const char *path, int *in_progress);

/// The longest path a UNIX socket may have (sun_path less its terminating NUL).
int cshim_unix_path_maximum(void);

/// The pending error of a socket (SO_ERROR): 0 when a non-blocking connect succeeded.
int cshim_socket_error(int fd);
/// Local and peer addresses of a connected socket. Return 0 or -errno.
int cshim_local_address(int fd, cshim_address *out);
int cshim_peer_address(int fd, cshim_address *out);

/// TCP_NODELAY on: IMAP is request/response; Nagle would add a delay to pipelined replies.
int cshim_set_nodelay(int fd);
/// SO_KEEPALIVE with idle/interval/count in seconds, so dead peers of idle IMAP sessions
/// (IDLE can last 30 minutes) are found by the kernel.
int cshim_set_keepalive(int fd, int idle_s, int interval_s, int count);

/// sendfile(2) from `in_fd` at `*offset` (advanced): bytes sent or -errno. Why: the Glibc
/// module's sendfile takes an off_t pointer that differs between 32/64-bit builds.
long cshim_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
/// splice(2) with SPLICE_F_MOVE|SPLICE_F_NONBLOCK between a socket and a pipe: bytes moved,
/// 0 at end of input, or -errno. Why: splice is not in Swift's Glibc module.
long cshim_splice(int in_fd, int out_fd, size_t count);
/// pipe2(O_NONBLOCK|O_CLOEXEC) into fds[2]. Why: pipe2 is not in Swift's Glibc module.
int cshim_pipe(int fds[2]);
/// Asks for a pipe of `bytes` (F_SETPIPE_SZ); returns the pipe's size (the one asked for, or
/// the one it keeps when refused), or -errno.
/// Why: fcntl is variadic (Swift cannot call it) and F_SETPIPE_SZ needs _GNU_SOURCE.
int cshim_pipe_set_size(int fd, int bytes);

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (or `wanted` if lower). Returns the
/// new soft limit or -errno. Why: an IMAP server holding 50,000 IDLE sessions needs more than
/// the default 1,024 descriptors.
long cshim_raise_nofile_limit(long wanted);

/// Marks a directory as the top of directory hierarchies (chattr +T, FS_TOPDIR_FL): ext4's Orlov
/// allocator then spreads the directories made in it across block groups, as it does for those
/// in the file system's root. Returns 0, or -errno (ENOTTY, EOPNOTSUPP where the file system has
/// no such flag). Why: ioctl is variadic (Swift cannot call it) and the flag lives in linux/fs.h.
int cshim_mark_top_directory(int fd);
/// 1 when the directory carries FS_TOPDIR_FL, 0 when not, -errno when its file system keeps no
/// such flags. Why: as cshim_mark_top_directory (the tests check the mark through it).
int cshim_is_top_directory(int fd);

/// Names the calling thread (at most 15 bytes), so top, perf and gdb show which loop is busy.
/// Why: pthread_setname_np is a GNU extension Swift's Glibc module does not export.
void cshim_set_thread_name(const char *name);

// MARK: - TLS (OpenSSL, non-blocking)

/// Opaque handles: SSL_CTX and SSL and SSL_SESSION, kept opaque so OpenSSL's headers stay in C.
typedef struct cshim_tls_context cshim_tls_context;
typedef struct cshim_tls cshim_tls;
typedef struct cshim_tls_session cshim_tls_session;

/// Results of the non-blocking TLS calls besides a byte count (>= 0).
static const int CSHIM_TLS_WANT_READ = -1;   // retry when the socket is readable
static const int CSHIM_TLS_WANT_WRITE = -2;  // retry when the socket is writable
static const int CSHIM_TLS_CLOSED = -3;      // the peer closed (close_notify or EOF)
static const int CSHIM_TLS_ERROR = -4;       // fatal; cshim_tls_last_error has the text

/// Copies the text of the calling thread's last TLS error (OpenSSL's queue, or errno for a
/// syscall error) into `out`. Why: OpenSSL's error queue is per thread and must be read on
/// the thread that failed, right after the failing call.
void cshim_tls_last_error(char *out, size_t out_len);

/// A server context from a PEM certificate chain and a PEM private key, TLS 1.2 minimum,
/// partial writes and moving write buffers allowed, compression and renegotiation off, a
/// server-side session cache. `alpn` is a wire-format protocol list (length-prefixed
/// names, e.g. "\x04imap") or NULL: when a client offers ALPN, one of these must match.
/// NULL on failure with the reason in `err`. Why: the configuration needs OpenSSL macros
/// (SSL_CTX_set_min_proto_version, SSL_CTX_set_mode, SSL_OP_*) that Swift cannot import.
cshim_tls_context *cshim_tls_server_context(const char *cert_chain_path, const char *key_path,
                                            const unsigned char *alpn, size_t alpn_len,
                                            char *err, size_t err_len);
/// A client context, TLS 1.2 minimum, with client-side session caching. When `verify` is
/// set, the peer's chain is checked against `ca_file` (or the system store when NULL) and
/// the host name given to cshim_tls_new.
cshim_tls_context *cshim_tls_client_context(int verify, const char *ca_file, const unsigned char *alpn,
                                            size_t alpn_len, char *err, size_t err_len);
/// Serves `alternative` (another server context: its certificate, key and ALPN) to clients
/// whose SNI names `server_name` (case-insensitive), instead of `ctx`'s own certificate.
/// Call while configuring `ctx`, before any connection uses it. Returns 0 or -ENOMEM.
/// Why: SNI selection happens in an OpenSSL callback that swaps the connection's SSL_CTX,
/// which only C can install.
int cshim_tls_server_context_add_name(cshim_tls_context *ctx, const char *server_name,
                                      cshim_tls_context *alternative);
/// Drops our reference; connections made from the context keep it alive until they end,
/// which is what makes certificate reload a matter of swapping contexts.
void cshim_tls_context_free(cshim_tls_context *ctx);

/// A TLS connection over the non-blocking socket `fd`. `server_name` (client side, may be
/// NULL) is sent as SNI and checked when verifying. `session` (client side, may be NULL)
/// is offered for resumption.
cshim_tls *cshim_tls_new(cshim_tls_context *ctx, int fd, int is_server, const char *server_name,
                         cshim_tls_session *session);
void cshim_tls_free(cshim_tls *tls);
/// Drives the handshake: 0 when done, or WANT_READ / WANT_WRITE / CLOSED / ERROR.
int cshim_tls_handshake(cshim_tls *tls);
/// Reads decrypted bytes: a count > 0, or WANT_READ / WANT_WRITE / CLOSED / ERROR.
int cshim_tls_read(cshim_tls *tls, void *buf, size_t len);
/// Writes up to 16 KiB per call (partial writes): a count > 0, or WANT_* / CLOSED / ERROR.
int cshim_tls_write(cshim_tls *tls, const void *buf, size_t len);
/// Sends close_notify without waiting for the peer's: 0, or WANT_* / ERROR.
int cshim_tls_shutdown(cshim_tls *tls);
/// Bytes already decrypted inside OpenSSL, invisible to epoll.
int cshim_tls_pending(cshim_tls *tls);
/// The socket the connection runs over (it can move between event loops with it).
int cshim_tls_fd(cshim_tls *tls);
/// Negotiated protocol version text ("TLSv1.3"), the SNI name the client sent (server
/// side, NULL if none), the ALPN protocol chosen (NULL if none; `*len` set).
const char *cshim_tls_version(cshim_tls *tls);
const char *cshim_tls_server_name(cshim_tls *tls);
const unsigned char *cshim_tls_alpn(cshim_tls *tls, unsigned *len);
/// Client side: a reference to the session for resumption on a later connection (free it
/// with cshim_tls_session_free), and whether this connection resumed one.
cshim_tls_session *cshim_tls_get_session(cshim_tls *tls);
void cshim_tls_session_free(cshim_tls_session *session);
int cshim_tls_session_reused(cshim_tls *tls);

/// Writes a new self-signed certificate (EC P-256, SHA-256, `days` valid, subject CN and
/// subjectAltName DNS:`common_name`, DNS:localhost, IP:127.0.0.1, IP:::1) and its key to PEM
/// files; the key file is created 0600. Returns 0 or -1 with the reason in `err`.
/// Why: first run and tests need a certificate without the openssl command-line tool.
int cshim_tls_make_self_signed(const char *cert_path, const char *key_path, const char *common_name,
                               int days, char *err, size_t err_len);

#endif
