/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor benchmark's stand-in for many API server addresses: a TCP relay listening on a range of
 * loopback ports, each forwarding to one of a few real API servers (round robin by port), so that
 * every cluster record has an address of its own, as real clusters do, while a handful of real
 * servers answer. TLS stays end to end (the relay copies bytes); the servers' certificates name
 * 127.0.0.1, whatever the port. One thread, epoll, level-triggered.
 *
 *   port-relay --first-port P --count N --upstreams PORT[,PORT...] [--index-offset K]
 *
 * Port P + j forwards to upstream (K + j) mod (number of upstreams). Prints "ready" once every port
 * is bound; runs until SIGTERM or SIGINT. Each relayed connection takes two descriptors and each port
 * one: run several relays over parts of the range when that exceeds RLIMIT_NOFILE.
 */
#include "base/common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "base/parse.h"

enum kind { LISTENER, SIDE };

struct listener {
        enum kind kind;
        int fd;
        uint16_t upstream;
};

struct side {
        enum kind kind;
        int fd;
        struct side *peer;
        bool connecting; /* the upstream side until its connect finishes */
        bool dead; /* closed; freed after the current batch of events */
        struct side *next_dead;
        char *pending; /* bytes read from the peer not yet written to this side */
        size_t plen, poff;
};

static volatile sig_atomic_t stop_requested;
static int ep;
static struct side *graveyard;
static char buf[64 * 1024];

static void on_signal(int sig) {
        stop_requested = sig;
}

static int watch(struct side *s, int op, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = s };

        return epoll_ctl(ep, op, s->fd, &ev);
}

/* Closes both sides; the memory goes after the batch (a later event of it may name either side). */
static void close_pair(struct side *s) {
        struct side *p = s->peer;

        if (s->dead)
                return;
        s->dead = true;
        close(s->fd);
        s->next_dead = graveyard;
        graveyard = s;
        if (p && !p->dead) {
                p->dead = true;
                close(p->fd);
                p->next_dead = graveyard;
                graveyard = p;
        }
}

static void set_nodelay(int fd) {
        int one = 1;

        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void accept_all(struct listener *l) {
        for (;;) {
                struct sockaddr_in up = { .sin_family = AF_INET, .sin_port = htons(l->upstream) };
                int cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), ufd;
                struct side *c, *u;

                if (cfd < 0)
                        return;
                ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                c = new0(struct side, 1);
                u = new0(struct side, 1);
                up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (ufd < 0 || !c || !u ||
                    (connect(ufd, (struct sockaddr *) &up, sizeof(up)) < 0 && errno != EINPROGRESS)) {
                        close(cfd);
                        if (ufd >= 0)
                                close(ufd);
                        free(c);
                        free(u);
                        continue;
                }
                set_nodelay(cfd);
                set_nodelay(ufd);
                *c = (struct side){ .kind = SIDE, .fd = cfd, .peer = u };
                *u = (struct side){ .kind = SIDE, .fd = ufd, .peer = c, .connecting = true };
                /* The client is read only once the upstream connection is up. */
                if (watch(u, EPOLL_CTL_ADD, EPOLLOUT) < 0)
                        close_pair(c);
        }
}

/* Writes what s still owes its socket; 1 when all is written, 0 when it must wait, -1 on error. */
static int flush_pending(struct side *s) {
        while (s->poff < s->plen) {
                ssize_t w = write(s->fd, s->pending + s->poff, s->plen - s->poff);

                if (w < 0)
                        return errno == EAGAIN ? 0 : -1;
                s->poff += (size_t) w;
        }
        free(s->pending);
        s->pending = NULL;
        s->plen = s->poff = 0;
        return 1;
}

/* Reads from s and writes to its peer; a short write parks the rest and stops reading s. */
static int relay(struct side *s) {
        struct side *p = s->peer;
        ssize_t n = read(s->fd, buf, sizeof(buf)), w;

        if (n == 0)
                return -1;
        if (n < 0)
                return errno == EAGAIN ? 0 : -1;
        w = write(p->fd, buf, (size_t) n);
        if (w < 0 && errno != EAGAIN)
                return -1;
        if (w == n)
                return 0;
        w = MAX(w, 0);
        p->pending = malloc((size_t) (n - w));
        if (!p->pending)
                return -1;
        memcpy(p->pending, buf + w, (size_t) (n - w));
        p->plen = (size_t) (n - w);
        p->poff = 0;
        if (watch(p, EPOLL_CTL_MOD, EPOLLOUT) < 0 || watch(s, EPOLL_CTL_MOD, 0) < 0)
                return -1;
        return 0;
}

static int on_side(struct side *s, uint32_t events) {
        if (s->connecting) {
                int err = 0;
                socklen_t len = sizeof(err);

                if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
                        return -1;
                s->connecting = false;
                if (watch(s, EPOLL_CTL_MOD, EPOLLIN) < 0 || watch(s->peer, EPOLL_CTL_ADD, EPOLLIN) < 0)
                        return -1;
                return 0;
        }
        if (events & EPOLLOUT) {
                int r = flush_pending(s);

                if (r < 0)
                        return -1;
                if (r > 0 &&
                    (watch(s, EPOLL_CTL_MOD, EPOLLIN) < 0 || watch(s->peer, EPOLL_CTL_MOD, EPOLLIN) < 0))
                        return -1;
                return 0;
        }
        if (events & EPOLLIN)
                return relay(s);
        return (events & (EPOLLERR | EPOLLHUP)) ? -1 : 0;
}

int main(int argc, char *argv[]) {
        static const struct option longopts[] = {
                { "first-port", required_argument, NULL, 'p' },
                { "count", required_argument, NULL, 'n' },
                { "upstreams", required_argument, NULL, 'u' },
                { "index-offset", required_argument, NULL, 'k' },
                {},
        };
        unsigned first = 0, count = 0, offset = 0, ups[16], n_ups = 0;
        struct listener *ls;
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'p':
                        if (safe_atou(optarg, &first) < 0)
                                return 2;
                        break;
                case 'n':
                        if (safe_atou(optarg, &count) < 0)
                                return 2;
                        break;
                case 'k':
                        if (safe_atou(optarg, &offset) < 0)
                                return 2;
                        break;
                case 'u': {
                        char *save = NULL;

                        for (char *t = strtok_r(optarg, ",", &save); t; t = strtok_r(NULL, ",", &save))
                                if (n_ups >= ELEMENTSOF(ups) || safe_atou(t, &ups[n_ups++]) < 0 ||
                                    ups[n_ups - 1] == 0 || ups[n_ups - 1] > 65535)
                                        return 2;
                        break;
                }
                default:
                        return 2;
                }
        }
        if (first == 0 || count == 0 || n_ups == 0 || first + count - 1 > 65535) {
                fprintf(stderr, "usage: port-relay --first-port P --count N --upstreams PORT[,PORT...] "
                                "[--index-offset K]\n");
                return 2;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        ls = new0(struct listener, count);
        if (ep < 0 || !ls)
                return 1;
        for (unsigned j = 0; j < count; j++) {
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) (first + j)) };
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &ls[j] };
                int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        fprintf(stderr, "port-relay: port %u: %s\n", first + j, strerror(errno));
                        return 1;
                }
                ls[j] = (struct listener){ .kind = LISTENER,
                                           .fd = fd,
                                           .upstream = (uint16_t) ups[(offset + j) % n_ups] };
        }
        signal(SIGPIPE, SIG_IGN);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        printf("ready\n");
        fflush(stdout);
        while (!stop_requested) {
                struct epoll_event evs[256];
                int n = epoll_wait(ep, evs, ELEMENTSOF(evs), 1000);

                for (int i = 0; i < n; i++) {
                        enum kind *k = evs[i].data.ptr;

                        if (*k == LISTENER)
                                accept_all((struct listener *) k);
                        else if (!((struct side *) k)->dead && on_side((struct side *) k, evs[i].events) < 0)
                                close_pair((struct side *) k);
                }
                while (graveyard) {
                        struct side *d = graveyard;

                        graveyard = d->next_dead;
                        free(d->pending);
                        free(d);
                }
        }
        return 0;
}
