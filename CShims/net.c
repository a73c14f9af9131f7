// epoll, eventfd, sockets, sendfile, splice and limits: see CShims.h for why each exists.
#ifndef _GNU_SOURCE
#error You must define _GNU_SOURCE
#endif
#include "CShims.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

_Static_assert(EPOLLIN == 0x001 && EPOLLOUT == 0x004 && EPOLLERR == 0x008 && EPOLLHUP == 0x010 &&
               EPOLLRDHUP == 0x2000 && EPOLLET == (1u << 31) && EPOLLEXCLUSIVE == (1u << 28), "epoll constants mirrored in CShims.h");
_Static_assert(EPOLL_CTL_ADD == 1 && EPOLL_CTL_DEL == 2 && EPOLL_CTL_MOD == 3, "epoll_ctl ops mirrored");

int cshim_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cshim_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data = {.u64 = data}};
    return epoll_ctl(epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int cshim_epoll_wait(int epfd, cshim_epoll_event *events, int max_events, int timeout_ms) {
    struct epoll_event raw[1024];
    if (max_events > 1024) max_events = 1024;
    int n = epoll_wait(epfd, raw, max_events, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        events[i].events = raw[i].events;
        events[i].data = raw[i].data.u64;
    }
    return n;
}

int cshim_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cshim_eventfd_signal(int fd) {
    uint64_t one = 1;
    for (;;) {
        if (write(fd, &one, sizeof one) == sizeof one) return 0;
        if (errno == EINTR) continue;
        return errno == EAGAIN ? 0 : -errno;
    }
}

int cshim_eventfd_drain(int fd) {
    uint64_t value;
    for (;;) {
        if (read(fd, &value, sizeof value) == sizeof value) return 0;
        if (errno == EINTR) continue;
        return errno == EAGAIN ? 0 : -errno;
    }
}

/* Parses a numeric IPv4 or IPv6 host into `ss`; returns its length or 0. */
static socklen_t parse_address(const char *host, uint16_t port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    return 0;
}

/* Dotted-quad text of an IPv4 address. Written here because glibc's inet_ntop formats IPv4 with
 * sprintf, which was a visible share of every accepted connection's user-space cost. */
static void format_ipv4(const struct in_addr *address, char *out) {
    const unsigned char *octets = (const unsigned char *)&address->s_addr;
    for (int i = 0; i < 4; i++) {
        unsigned value = octets[i];
        if (value >= 100) *out++ = (char)('0' + value / 100);
        if (value >= 10) *out++ = (char)('0' + value / 10 % 10);
        *out++ = (char)('0' + value % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

static void format_address(const struct sockaddr_storage *ss, cshim_address *out) {
    memset(out, 0, sizeof *out);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
        format_ipv4(&v4->sin_addr, out->host);
        out->port = ntohs(v4->sin_port);
        out->family = 4;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &v6->sin6_addr, out->host, sizeof out->host);
        out->port = ntohs(v6->sin6_port);
        out->family = 6;
    }
}

int cshim_listen_tcp(const char *host, uint16_t port, int backlog, int reuse_port) {
    struct sockaddr_storage ss;
    socklen_t len = parse_address(host, port, &ss);
    if (len == 0) return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    // TCP_NODELAY on the listener: Linux copies it to every accepted socket, which saves a
    // setsockopt per connection accepted.
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    return fd;
}

int cshim_probe_tcp_address(const char *host, uint16_t port) {
    struct sockaddr_storage ss;
    socklen_t len = parse_address(host, port, &ss);
    if (len == 0) return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    int result = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0) {
        result = -errno;
    }
    close(fd);
    return result;
}

int cshim_accept(int listen_fd, cshim_address *peer) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    for (;;) {
        int fd = accept4(listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peer) format_address(&ss, peer);
            return fd;
        }
        if (errno != EINTR) return -errno;
    }
}

/* Starts a non-blocking connect of `fd`: returns fd (with *in_progress set while it completes)
   or -errno, the socket closed. */
static int start_connect(int fd, const struct sockaddr *address, socklen_t len, int *in_progress) {
    *in_progress = 0;
    for (;;) {
        if (connect(fd, address, len) == 0) return fd;
        if (errno == EINTR) continue;
        if (errno == EINPROGRESS) {
            *in_progress = 1;
            return fd;
        }
        int saved = errno;
        close(fd);
        return -saved;
    }
}

int cshim_connect_tcp(const char *host, uint16_t port, const char *source_host, int *in_progress) {
    struct sockaddr_storage ss;
    socklen_t len = parse_address(host, port, &ss);
    if (len == 0) return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (source_host != NULL && source_host[0] != '\0') {
        struct sockaddr_storage src;
        socklen_t src_len = parse_address(source_host, 0, &src);
        int one = 1;
        // IP_BIND_ADDRESS_NO_PORT: pick the port at connect time, so one source address
        // serves 64k connections per destination rather than 64k in all.
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (src_len == 0 || src.ss_family != ss.ss_family) {
            close(fd);
            return -EINVAL;
        }
        if (bind(fd, (struct sockaddr *)&src, src_len) < 0) {
            int saved = errno;
            close(fd);
            return -saved;
        }
    }
    return start_connect(fd, (struct sockaddr *)&ss, len, in_progress);
}

int cshim_unix_path_maximum(void) { return (int)sizeof(((struct sockaddr_un *)0)->sun_path) - 1; }

/* Fills `sun` for `path`; returns its length or 0 when the path does not fit. */
static socklen_t unix_address(const char *path, struct sockaddr_un *sun) {
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof sun->sun_path) return 0;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, length + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
}

int cshim_listen_unix(const char *path, int backlog, uint64_t *device, uint64_t *inode) {
    struct sockaddr_un sun;
    socklen_t len = unix_address(path, &sun);
    if (len == 0) return -ENAMETOOLONG;
    /* Only our own socket nobody accepts on is stale. lstat, not stat: a symlink is never
       followed, nor removed; a regular file (a mistyped path) is never removed. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return -ENOTSOCK;
        if (st.st_uid != geteuid()) return -EPERM;
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0) return -errno;
        int result = connect(probe, (struct sockaddr *)&sun, len) == 0 ? 0 : errno;
        close(probe);
        /* Accepted, or a full backlog (EAGAIN): live, another instance's. */
        if (result == 0 || result == EAGAIN) return -EADDRINUSE;
        if (result != ECONNREFUSED) return -result;
        if (unlink(path) < 0 && errno != ENOENT) return -errno;
    } else if (errno != ENOENT) {
        return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&sun, len) < 0 || chmod(path, 0600) < 0 || lstat(path, &st) < 0 ||
        listen(fd, backlog) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    *device = (uint64_t)st.st_dev;
    *inode = (uint64_t)st.st_ino;
    return fd;
}

int cshim_connect_unix(const char *path, int *in_progress) {
    struct sockaddr_un sun;
    socklen_t len = unix_address(path, &sun);
    if (len == 0) return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    return start_connect(fd, (struct sockaddr *)&sun, len, in_progress);
}

int cshim_socket_error(int fd) {
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) return errno;
    return error;
}

int cshim_local_address(int fd, cshim_address *out) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    format_address(&ss, out);
    return 0;
}

int cshim_peer_address(int fd, cshim_address *out) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    format_address(&ss, out);
    return 0;
}

int cshim_set_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ? -errno : 0;
}

int cshim_set_keepalive(int fd, int idle_s, int interval_s, int count) {
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) < 0)
        return -errno;
    return 0;
}

long cshim_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count) {
    off_t off = (off_t)*offset;
    for (;;) {
        ssize_t n = sendfile(out_fd, in_fd, &off, count);
        if (n >= 0) {
            *offset = (int64_t)off;
            return (long)n;
        }
        if (errno != EINTR) return -errno;
    }
}

long cshim_splice(int in_fd, int out_fd, size_t count) {
    for (;;) {
        ssize_t n = splice(in_fd, NULL, out_fd, NULL, count, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n >= 0) return (long)n;
        if (errno != EINTR) return -errno;
    }
}

int cshim_pipe(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0 ? -errno : 0;
}

int cshim_pipe_set_size(int fd, int bytes) {
    int size = fcntl(fd, F_SETPIPE_SZ, bytes);
    if (size >= 0) return size;
    /* Refused (over fs.pipe-max-size or the user's pipe pages): say what the pipe has. */
    size = fcntl(fd, F_GETPIPE_SZ);
    return size < 0 ? -errno : size;
}

long cshim_raise_nofile_limit(long wanted) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) < 0) return -errno;
    rlim_t target = lim.rlim_max;
    if (wanted > 0 && (rlim_t)wanted < target) target = (rlim_t)wanted;
    if (target > lim.rlim_cur) {
        lim.rlim_cur = target;
        if (setrlimit(RLIMIT_NOFILE, &lim) < 0) return -errno;
    }
    return (long)lim.rlim_cur;
}

#include <pthread.h>
void cshim_set_thread_name(const char *name) {
    char truncated[16];
    snprintf(truncated, sizeof truncated, "%s", name);
    pthread_setname_np(pthread_self(), truncated);
}
