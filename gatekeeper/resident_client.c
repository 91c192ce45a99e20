/* gatekeeper-ssh-resident: the ForceCommand's client of `gatekeeper resident` (gatekeeper/resident.py).
 *
 * It parses nothing and decides nothing. It connects to the pool's socket for its own uid,
 * accepts only a listener with root's credentials (the pool binds as root, then drops to the
 * agent), sends its stdin/stdout/stderr (SCM_RIGHTS) with its argv, umask, rlimits and
 * environment in one message, and relays the exit status the worker sends back. The worker
 * keeps only SSH_ORIGINAL_COMMAND, SSH_CONNECTION and SSH_USER_AUTH of that environment.
 *
 * It fails closed: it execs nothing. Until the worker acknowledges (its pid), any failure
 * (no pool, a listener not root's, too large a request, the worker closing) is a denial with
 * one line on stderr, and nothing of the call has run. After it, SIGHUP, SIGTERM and SIGINT
 * are passed on to the worker (which forwards them to docker), and a worker that ends
 * without a status is a failure (exit 70), never a second run.
 *
 * Compiled by `gatekeeper install-entry --resident` with GK_SOCKET_DIR set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef GK_SOCKET_DIR
#define GK_SOCKET_DIR "/run/gatekeeper-resident"
#endif
#define MAGIC "gatekeeper-resident 1"
#define MAX_REQUEST (128 * 1024) /* resident.MAX_REQUEST */
#define RLIMITS 16               /* resident.RLIMITS */
#define EX_SOFTWARE 70
#define EX_TEMPFAIL 75 /* gatekeeper.errors: try again later */
#define EX_NOPERM 77
#define NO_POOL "gatekeeper: denied: the resident pool is not running (gatekeeper-resident.service); ask the operator\n"
#define NOT_ROOTS "gatekeeper: denied: the resident pool's socket is not root's; ask the operator\n"
#define TOO_LARGE "gatekeeper: denied: command and environment larger than 128 KiB\n"
#define NOT_TAKEN "gatekeeper: denied: the resident pool did not take the call (restarting?); try again\n"

extern char **environ;
static volatile pid_t worker;
static sigset_t saved_mask;

/* Before the worker's acknowledgement: nothing of the call has run, and nothing else will. */
static void deny(const char *line, int status) {
    (void)!write(2, line, strlen(line));
    _exit(status);
}

static void forward(int signum) {
    if (worker > 0)
        kill(worker, signum);
}

/* Append `tag` `text` and a NUL; 0 if it would not fit. */
static int put(char *buffer, size_t *used, const char *tag, const char *text) {
    size_t need = strlen(tag) + strlen(text) + 1;
    if (*used + need > MAX_REQUEST)
        return 0;
    memcpy(buffer + *used, tag, strlen(tag));
    memcpy(buffer + *used + strlen(tag), text, strlen(text) + 1);
    *used += need;
    return 1;
}

static size_t build_request(char *buffer, char **argv) {
    size_t used = 0;
    char text[96];
    mode_t mask = umask(0);
    umask(mask);
    snprintf(text, sizeof text, "%o", (unsigned)mask);
    if (!put(buffer, &used, MAGIC, "") || !put(buffer, &used, "umask=", text))
        return 0;
    for (int which = 0; which < RLIMITS; which++) {
        struct rlimit limit;
        if (getrlimit(which, &limit) != 0)
            return 0;
        snprintf(text, sizeof text, "%d:%llu:%llu", which, (unsigned long long)limit.rlim_cur,
                 (unsigned long long)limit.rlim_max);
        if (!put(buffer, &used, "rlimit=", text))
            return 0;
    }
    for (char **arg = argv + 1; *arg; arg++)
        if (!put(buffer, &used, "arg=", *arg))
            return 0;
    for (char **variable = environ; *variable; variable++)
        if (!put(buffer, &used, "env=", *variable))
            return 0;
    return used;
}

/* A connection to root's listener for this uid; -1 without one, -2 if the listener is not root's. */
static int connect_pool(void) {
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    int length = snprintf(address.sun_path, sizeof address.sun_path, "%s/%u.sock", GK_SOCKET_DIR,
                          (unsigned)getuid());
    if (length < 0 || (size_t)length >= sizeof address.sun_path)
        return -1;
    int conn = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (conn < 0)
        return -1;
    struct ucred peer;
    socklen_t size = sizeof peer;
    if (connect(conn, (struct sockaddr *)&address, sizeof address) != 0) {
        close(conn);
        return -1;
    }
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 || peer.uid != 0) {
        close(conn);
        return -2;
    }
    return conn;
}

static int send_request(int conn, char *buffer, size_t used) {
    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec vector = {.iov_base = buffer, .iov_len = used};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof control};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(header), fds, sizeof fds);
    ssize_t sent;
    do
        sent = sendmsg(conn, &message, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    return sent == (ssize_t)used;
}

/* One message from the worker: "A<pid>" or "E<status>"; its number, or -1 at EOF or on error. */
static long receive(int conn, char kind) {
    char reply[32];
    ssize_t got;
    do
        got = recv(conn, reply, sizeof reply - 1, 0);
    while (got < 0 && errno == EINTR);
    if (got < 2 || reply[0] != kind)
        return -1;
    reply[got] = 0;
    char *end;
    long value = strtol(reply + 1, &end, 10);
    return *end == 0 && value >= 0 ? value : -1;
}

int main(int argc, char **argv) {
    (void)argc;
    sigset_t forwarded;
    sigemptyset(&forwarded);
    sigaddset(&forwarded, SIGHUP);
    sigaddset(&forwarded, SIGTERM);
    sigaddset(&forwarded, SIGINT);
    sigprocmask(SIG_BLOCK, &forwarded, &saved_mask); /* held until the worker's pid is known */

    static char buffer[MAX_REQUEST];
    int conn = connect_pool();
    if (conn < 0)
        deny(conn == -2 ? NOT_ROOTS : NO_POOL, conn == -2 ? EX_SOFTWARE : EX_TEMPFAIL);
    size_t used = build_request(buffer, argv);
    if (used == 0)
        deny(TOO_LARGE, EX_NOPERM);
    if (!send_request(conn, buffer, used))
        deny(NOT_TAKEN, EX_TEMPFAIL);
    long pid = receive(conn, 'A');
    if (pid <= 0)
        deny(NOT_TAKEN, EX_TEMPFAIL); /* closed before acknowledging (stale code, an rlimit) */

    worker = (pid_t)pid;
    struct sigaction action = {.sa_handler = forward};
    sigemptyset(&action.sa_mask);
    for (int signum = 1; signum < NSIG; signum++)
        if (sigismember(&forwarded, signum))
            sigaction(signum, &action, NULL);
    sigprocmask(SIG_SETMASK, &saved_mask, NULL);

    long status = receive(conn, 'E');
    if (status < 0 || status > 255) {
        static const char line[] = "gatekeeper: denied: internal error (the resident worker ended); see syslog\n";
        (void)!write(2, line, sizeof line - 1);
        _exit(EX_SOFTWARE);
    }
    _exit((int)status);
}
