// The physical baseline for perf/run reactor-echo: a minimal edge-triggered epoll echo server
// in C, one thread, optionally TLS (OpenSSL, non-blocking). No framing, no buffering beyond
// what echo needs: the least work a server can do per message.
//
// usage: echo-server PORT [CERT KEY]     (prints "ready" when listening)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    SSL *ssl;
    int handshaking;
    char pending[65536]; // bytes read but not yet written back
    size_t pending_len;
} conn;

static SSL_CTX *ctx;

static void drop(int ep, conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
    free(c);
}

// Writes what is pending; returns 0 while it would block, 1 when drained, -1 on error.
static int flush_pending(conn *c) {
    size_t off = 0;
    while (off < c->pending_len) {
        ssize_t n;
        if (c->ssl) {
            int r = SSL_write(c->ssl, c->pending + off, (int)(c->pending_len - off));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
                return -1;
            }
            n = r;
        } else {
            n = write(c->fd, c->pending + off, c->pending_len - off);
            if (n < 0) {
                if (errno == EAGAIN) break;
                return -1;
            }
        }
        off += (size_t)n;
    }
    memmove(c->pending, c->pending + off, c->pending_len - off);
    c->pending_len -= off;
    return c->pending_len == 0;
}

static int serve(conn *c) {
    if (c->handshaking) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
        }
        c->handshaking = 0;
    }
    for (;;) {
        int drained = flush_pending(c);
        if (drained < 0) return -1;
        if (!drained) return 0; // wait for EPOLLOUT before reading more
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, c->pending, sizeof c->pending);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
            }
            n = r;
        } else {
            n = read(c->fd, c->pending, sizeof c->pending);
            if (n == 0) return -1;
            if (n < 0) return errno == EAGAIN ? 0 : -1;
        }
        c->pending_len = (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 4) {
        ctx = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("ready\n");
    fflush(stdout);
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(ep, events, 512, -1);
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    if (ctx) {
                        nc->ssl = SSL_new(ctx);
                        SSL_set_fd(nc->ssl, fd);
                        SSL_set_accept_state(nc->ssl);
                        nc->handshaking = 1;
                    }
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (serve(c) < 0) drop(ep, c);
        }
    }
}
