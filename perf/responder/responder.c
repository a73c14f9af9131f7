/*
 * perf/responder: the smallest IMAP server that answers every command at once, for
 * `perf/run load-ceiling`. It measures the load generator, not a server: no mailbox, no
 * checks. One thread, epoll, non-blocking sockets; loopback only.
 *
 *   responder PORT        (0: ephemeral; the port chosen is printed on stdout)
 *
 * LOGIN, LOGOUT, SELECT/EXAMINE, IDLE and APPEND get the replies a client needs to go on;
 * every other command gets `tag OK done`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define INPUT_SIZE 65536
#define OUTPUT_SIZE 262144
#define WAIT_IDLE 1
#define WAIT_APPEND 2

struct client {
    int fd;
    size_t in_length;
    size_t out_length;
    size_t out_sent;
    unsigned long long literal_left; /* APPEND bytes still to skip */
    int waiting;                     /* WAIT_IDLE or WAIT_APPEND: pending_tag is answered later */
    size_t pending_tag_length;
    char pending_tag[64];
    char in[INPUT_SIZE];
    char out[OUTPUT_SIZE];
};

static const char greeting[] = "* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE MOVE] responder ready\r\n";

static void append_out(struct client *c, const char *bytes, size_t length) {
    if (c->out_length + length > OUTPUT_SIZE) return; /* a client that never reads loses replies */
    memcpy(c->out + c->out_length, bytes, length);
    c->out_length += length;
}

static void reply(struct client *c, const char *tag, size_t tag_length, const char *text) {
    append_out(c, tag, tag_length);
    append_out(c, text, strlen(text));
}

/* Keeps the tag of a command answered later (after DONE, after the APPEND literal). */
static void remember(struct client *c, const char *tag, size_t length, int waiting) {
    if (length > sizeof c->pending_tag) length = sizeof c->pending_tag;
    memcpy(c->pending_tag, tag, length);
    c->pending_tag_length = length;
    c->waiting = waiting;
}

/* Handles one command line (without CRLF); returns -1 when the client logs out. */
static int command(struct client *c, char *line, size_t length) {
    char *space = memchr(line, ' ', length);
    if (!space) return 0;
    size_t tag_length = (size_t)(space - line);
    char *name = space + 1;
    size_t rest = length - tag_length - 1;
    if (rest >= 4 && strncasecmp(name, "UID ", 4) == 0) { name += 4; rest -= 4; }
    if (rest >= 6 && strncasecmp(name, "LOGOUT", 6) == 0) {
        append_out(c, "* BYE bye\r\n", 11);
        reply(c, line, tag_length, " OK done\r\n");
        return -1;
    }
    if (rest >= 6 && (strncasecmp(name, "SELECT", 6) == 0 || strncasecmp(name, "EXAMINE", 7) == 0)) {
        append_out(c, "* 0 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n", 37);
        reply(c, line, tag_length, " OK [READ-WRITE] done\r\n");
        return 0;
    }
    if (rest >= 4 && strncasecmp(name, "IDLE", 4) == 0) {
        append_out(c, "+ idling\r\n", 10);
        remember(c, line, tag_length, WAIT_IDLE);
        return 0;
    }
    if (length >= 4 && line[length - 1] == '}') {
        /* APPEND mailbox {N+} or {N}: skip the literal, then the command's CRLF. */
        char *open = memrchr(line, '{', length);
        if (open) {
            int synchronizing = line[length - 2] != '+';
            c->literal_left = strtoull(open + 1, NULL, 10) + 2;
            if (synchronizing) append_out(c, "+ go on\r\n", 9);
            remember(c, line, tag_length, WAIT_APPEND);
            return 0;
        }
    }
    reply(c, line, tag_length, " OK done\r\n");
    return 0;
}

/* Consumes complete lines (and APPEND literals) from the input buffer; -1 to close. */
static int process(struct client *c) {
    size_t offset = 0;
    while (offset < c->in_length) {
        if (c->literal_left > 0) {
            size_t take = c->in_length - offset;
            if (take > c->literal_left) take = (size_t)c->literal_left;
            c->literal_left -= take;
            offset += take;
            if (c->literal_left == 0 && c->waiting == WAIT_APPEND) {
                reply(c, c->pending_tag, c->pending_tag_length, " OK appended\r\n");
                c->waiting = 0;
            }
            continue;
        }
        char *newline = memchr(c->in + offset, '\n', c->in_length - offset);
        if (!newline) break;
        size_t length = (size_t)(newline - (c->in + offset));
        char *line = c->in + offset;
        offset += length + 1;
        if (length > 0 && line[length - 1] == '\r') length--;
        if (c->waiting == WAIT_IDLE) {
            if (length == 4 && strncasecmp(line, "DONE", 4) == 0) {
                reply(c, c->pending_tag, c->pending_tag_length, " OK idle done\r\n");
                c->waiting = 0;
            }
            continue;
        }
        if (command(c, line, length) < 0) {
            c->in_length = 0;
            return -1;
        }
    }
    memmove(c->in, c->in + offset, c->in_length - offset);
    c->in_length -= offset;
    return 0;
}

static int flush(struct client *c) {
    while (c->out_sent < c->out_length) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_length - c->out_sent, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->out_sent += (size_t)n;
    }
    c->out_length = c->out_sent = 0;
    return 0;
}

static void drop(int epoll, struct client *c) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 4096) < 0) {
        perror("responder: bind/listen");
        return 1;
    }
    socklen_t size = sizeof address;
    getsockname(listener, (struct sockaddr *)&address, &size);
    printf("%d\n", ntohs(address.sin_port));
    fflush(stdout);

    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);
    struct epoll_event events[256];
    for (;;) {
        int count = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < count; i++) {
            struct client *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct client *fresh = calloc(1, sizeof *fresh);
                    if (!fresh) { close(fd); continue; }
                    fresh->fd = fd;
                    struct epoll_event add = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = fresh};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &add);
                    append_out(fresh, greeting, sizeof greeting - 1);
                    flush(fresh);
                }
                continue;
            }
            int closing = 0;
            for (;;) {
                if (c->in_length == INPUT_SIZE) { closing = 1; break; } /* a line too long */
                ssize_t n = recv(c->fd, c->in + c->in_length, INPUT_SIZE - c->in_length, 0);
                if (n > 0) {
                    c->in_length += (size_t)n;
                    if (process(c) < 0) { closing = 1; break; }
                    continue;
                }
                if (n == 0 || errno != EAGAIN) closing = 1;
                break;
            }
            if (flush(c) < 0 || closing) drop(epoll, c);
        }
    }
}
