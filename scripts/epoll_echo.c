#define _GNU_SOURCE
/* A minimal epoll echo server: the physical-limit reference for benchmarks.
 * One thread, level-triggered epoll, TCP_NODELAY, a 64 KiB stack buffer;
 * a short write keeps the rest and waits for EPOLLOUT. No limits, no logs.
 * Build: cc -O2 -o epoll_echo scripts/epoll_echo.c   Run: ./epoll_echo PORT */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
static char *pend[MAXFD];
static size_t plen[MAXFD];

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(pend[fd]); pend[fd] = NULL; plen[fd] = 0;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8081, one = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001) };
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("listening on %d\n", port); fflush(stdout);
    char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAXFD) { close(c); continue; }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            if (plen[fd]) { /* flush what a short write left, then read again */
                ssize_t w = write(fd, pend[fd], plen[fd]);
                if (w < 0 && errno != EAGAIN) { drop(ep, fd); continue; }
                if (w > 0) { memmove(pend[fd], pend[fd] + w, plen[fd] - w); plen[fd] -= w; }
                if (plen[fd] == 0) { struct epoll_event ce = { .events = EPOLLIN, .data.fd = fd }; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce); }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EAGAIN)) { drop(ep, fd); continue; }
            if (r < 0) continue;
            ssize_t w = write(fd, buf, r);
            if (w < 0 && errno != EAGAIN) { drop(ep, fd); continue; }
            if (w < 0) w = 0;
            if (w < r) { /* backpressure: stop reading until flushed */
                pend[fd] = realloc(pend[fd], r - w); memcpy(pend[fd], buf + w, r - w); plen[fd] = r - w;
                struct epoll_event ce = { .events = EPOLLOUT, .data.fd = fd }; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
            }
        }
    }
}
