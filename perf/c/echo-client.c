// The load client of perf/run reactor-echo and reactor-idle, the same for every server measured.
//
// echo mode:  echo-client echo PORT CONNECTIONS DEPTH SIZE SECONDS [tls]
//   each connection keeps DEPTH messages of SIZE bytes in flight (pipelined), counts echoed
//   messages for SECONDS after a one-second warm-up, prints "messages_per_second N".
// idle mode:  echo-client idle PORT CONNECTIONS SOURCE_ADDRESSES
//   opens CONNECTIONS connections spread over 127.0.0.1..N source addresses, prints
//   "connected N", then waits for a line on stdin before closing them.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    int fd;
    SSL *ssl;
    int ready;
    size_t to_send;   // bytes of the current batch left to write
    size_t to_read;   // bytes of echo still expected for the batch
} client;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int open_connection(int port, const char *source) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in s = {.sin_family = AF_INET};
        inet_pton(AF_INET, source, &s.sin_addr);
        if (bind(fd, (struct sockaddr *)&s, sizeof s)) return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static char buffer[1 << 20];

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 5 && strcmp(argv[1], "idle") == 0) {
        int port = atoi(argv[2]), count = atoi(argv[3]), sources = atoi(argv[4]);
        int *fds = calloc((size_t)count, sizeof *fds);
        int opened = 0;
        char source[32];
        for (int i = 0; i < count; i++) {
            snprintf(source, sizeof source, "127.0.0.%d", 1 + i % sources);
            fds[i] = open_connection(port, source);
            if (fds[i] >= 0) opened++;
        }
        printf("connected %d\n", opened);
        fflush(stdout);
        char line[16];
        if (fgets(line, sizeof line, stdin) == NULL) {}
        for (int i = 0; i < count; i++) if (fds[i] >= 0) close(fds[i]);
        return opened == count ? 0 : 1;
    }
    if (argc < 7) return 2;
    int port = atoi(argv[2]), count = atoi(argv[3]), depth = atoi(argv[4]), size = atoi(argv[5]);
    double seconds = atof(argv[6]);
    int tls = argc > 7 && strcmp(argv[7], "tls") == 0;
    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    memset(buffer, 'x', sizeof buffer);
    size_t batch = (size_t)depth * (size_t)size;
    int ep = epoll_create1(0);
    client *clients = calloc((size_t)count, sizeof *clients);
    for (int i = 0; i < count; i++) {
        client *c = &clients[i];
        c->fd = open_connection(port, NULL);
        if (c->fd < 0) {
            perror("connect");
            return 1;
        }
        if (tls) {
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            if (SSL_connect(c->ssl) != 1) {
                fprintf(stderr, "TLS handshake failed\n");
                return 1;
            }
        }
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        c->to_send = batch;
        c->to_read = batch;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    double start = now(), measure_from = start + 1.0, end = measure_from + seconds;
    unsigned long long echoed_bytes = 0, all_bytes = 0;
    struct epoll_event events[512];
    while (now() < end) {
        int n = epoll_wait(ep, events, 512, 100);
        int measuring = now() >= measure_from;
        for (int i = 0; i < n; i++) {
            client *c = events[i].data.ptr;
            for (;;) {
                int progressed = 0;
                while (c->to_send > 0) {
                    size_t chunk = c->to_send < sizeof buffer ? c->to_send : sizeof buffer;
                    ssize_t w = c->ssl ? SSL_write(c->ssl, buffer, (int)chunk) : write(c->fd, buffer, chunk);
                    if (w <= 0) break;
                    c->to_send -= (size_t)w;
                    progressed = 1;
                }
                ssize_t r = c->ssl ? SSL_read(c->ssl, buffer, sizeof buffer) : read(c->fd, buffer, sizeof buffer);
                if (r > 0) {
                    progressed = 1;
                    if (measuring) echoed_bytes += (unsigned long long)r;
                    all_bytes += (unsigned long long)r;
                    size_t got = (size_t)r;
                    while (got > 0) {
                        size_t take = got < c->to_read ? got : c->to_read;
                        c->to_read -= take;
                        got -= take;
                        if (c->to_read == 0) { // batch complete: send the next one
                            c->to_read = batch;
                            c->to_send += batch;
                        }
                    }
                } else if (r == 0 || (!c->ssl && errno != EAGAIN)) {
                    fprintf(stderr, "server closed a connection\n");
                    return 1;
                }
                if (!progressed) break;
            }
        }
    }
    printf("messages_per_second %.0f\nmessages_total %llu\n", (double)echoed_bytes / size / seconds, all_bytes / (unsigned long long)size);
    return 0;
}
