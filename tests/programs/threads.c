// Threads: 16 pthreads, each with its own tid and the process's pid and its own thread-local
// storage; a raw clone(CLONE_THREAD) with CLONE_PARENT_SETTID, CLONE_CHILD_SETTID and
// CLONE_CHILD_CLEARTID (the tid word is cleared and a futex waiter woken at its exit); 64
// threads hammering a mutex to an exact count; pthread_kill and a process-directed signal
// handled in the one thread that should; a process whose main thread exits first lives on
// until its last thread exits.
#include "check.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static __thread int tls = 42;
static __thread char tls_array[64];

struct seen {
    int index;
    pid_t tid, pid;
    int tls_initial;
    int *tls_address;
    int tls_final;
};

static void *identify(void *arg) {
    struct seen *s = arg;
    s->tid = gettid_();
    s->pid = getpid();
    s->tls_initial = tls;
    CHECK(tls_array[0] == 0 && tls_array[63] == 0);
    tls = 1000 + s->index;
    memset(tls_array, s->index, sizeof tls_array);
    sched_yield();
    s->tls_address = &tls;
    s->tls_final = tls;
    for (int i = 0; i < 64; i++)
        CHECK(tls_array[i] == s->index);
    return (void *)(long)(s->index * 3);
}

static void sixteen(void) {
    enum { N = 16 };
    pthread_t t[N];
    struct seen s[N];
    tls = 7;
    for (int i = 0; i < N; i++) {
        s[i].index = i;
        CHECK(pthread_create(&t[i], NULL, identify, &s[i]) == 0);
    }
    for (int i = 0; i < N; i++) {
        void *ret;
        CHECK(pthread_join(t[i], &ret) == 0 && ret == (void *)(long)(i * 3));
    }
    pid_t me = getpid(), main_tid = gettid_();
    CHECK(main_tid == me);
    for (int i = 0; i < N; i++) {
        CHECK(s[i].pid == me && s[i].tid != main_tid && s[i].tid > 0);
        CHECK(s[i].tls_initial == 42 && s[i].tls_final == 1000 + i && s[i].tls_address != &tls);
        for (int j = 0; j < i; j++)
            CHECK(s[i].tid != s[j].tid);
    }
    CHECK(tls == 7);
    printf("16 threads: distinct tids, one pid, own TLS, join values\n");
}

/* A raw thread: no TLS of its own (it shares the creator's thread pointer), so it touches
 * only plain globals and makes no libc calls that could set errno. */
static volatile pid_t child_tid_word = -1, parent_tid_word;
static volatile int raw_saw_tid;
static int raw_thread(void *arg) {
    (void)arg;
    pid_t tid;
    asm volatile("syscall" : "=a"(tid) : "0"((long)SYS_gettid) : "rcx", "r11", "memory");
    raw_saw_tid = child_tid_word == tid ? tid : -tid;
    return 0; /* glibc's clone then makes the exit system call, for this thread only */
}

static void raw_clone(void) {
    static char stack[64 * 1024] __attribute__((aligned(16)));
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    pid_t tid = clone(raw_thread, stack + sizeof stack, flags, NULL, &parent_tid_word, NULL,
                      &child_tid_word);
    CHECK(tid > 0 && tid != getpid());
    CHECK(parent_tid_word == tid); /* written before clone returned */
    /* Wait for the kernel to clear the word at the thread's exit and wake us. The word is -1
     * until the thread writes its tid there (CLONE_CHILD_SETTID), then 0. */
    pid_t v;
    while ((v = child_tid_word) != 0) {
        long r = syscall(SYS_futex, &child_tid_word, FUTEX_WAIT, v, NULL, NULL, 0);
        CHECK(r == 0 || errno == EAGAIN || errno == EINTR);
    }
    CHECK(raw_saw_tid == tid);
    printf("raw clone: PARENT_SETTID, CHILD_SETTID, CHILD_CLEARTID wakes the waiter\n");
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *hammer(void *arg) {
    (void)arg;
    for (int i = 0; i < 10000; i++) {
        CHECK(pthread_mutex_lock(&lock) == 0);
        counter++;
        CHECK(pthread_mutex_unlock(&lock) == 0);
    }
    return NULL;
}

static void mutex_hammer(void) {
    enum { N = 64 };
    pthread_t t[N];
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, 256 * 1024) == 0);
    for (int i = 0; i < N; i++)
        CHECK(pthread_create(&t[i], &attr, hammer, NULL) == 0);
    for (int i = 0; i < N; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(counter == N * 10000L);
    printf("mutex: 64 threads x 10000 increments = %ld\n", counter);
}

/* Signals to threads. Each worker publishes its tid, then waits for `release`. */
enum { WORKERS = 4, TARGET = 2 };
static volatile pid_t worker_tid[WORKERS];
static volatile int release, started;
static volatile pid_t handled_in;
static volatile int handled_sig;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void record_thread(int sig) {
    handled_in = gettid_();
    handled_sig = sig;
    syscall(SYS_futex, &handled_in, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void *worker(void *arg) {
    int i = (int)(long)arg;
    if (i == TARGET) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR2);
        CHECK(pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0);
    }
    worker_tid[i] = gettid_();
    pthread_mutex_lock(&mu);
    started++;
    pthread_cond_broadcast(&cv);
    while (!release)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void wait_handled(void) {
    while (handled_in == 0)
        syscall(SYS_futex, &handled_in, FUTEX_WAIT, 0, NULL, NULL, 0);
}

static void thread_signals(void) {
    struct sigaction sa = {0};
    sa.sa_handler = record_thread;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0 && sigaction(SIGUSR2, &sa, NULL) == 0);
    /* Every thread but TARGET blocks SIGUSR2 (the workers inherit the main thread's mask). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
    pthread_t t[WORKERS];
    for (long i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    pthread_mutex_lock(&mu);
    while (started < WORKERS)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);

    /* pthread_kill: the handler runs in the thread named. */
    handled_in = 0;
    CHECK(pthread_kill(t[TARGET], SIGUSR1) == 0);
    wait_handled();
    CHECK(handled_in == worker_tid[TARGET] && handled_sig == SIGUSR1);
    handled_in = 0;
    CHECK(syscall(SYS_tgkill, getpid(), worker_tid[1], SIGUSR1) == 0);
    wait_handled();
    CHECK(handled_in == worker_tid[1]);
    /* A process-directed signal goes to the one thread not blocking it. */
    handled_in = 0;
    CHECK(kill(getpid(), SIGUSR2) == 0);
    wait_handled();
    CHECK(handled_in == worker_tid[TARGET] && handled_sig == SIGUSR2);
    /* tgkill checks that the thread belongs to the process named: a thread's own id is no
     * process id. */
    CHECK_ERR(syscall(SYS_tgkill, worker_tid[1], worker_tid[1], 0), ESRCH);
    CHECK(syscall(SYS_tgkill, getpid(), worker_tid[1], 0) == 0);

    pthread_mutex_lock(&mu);
    release = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0);
    printf("signals: pthread_kill and tgkill reach the named thread, kill the unblocked one\n");
}

/* The main thread leaves with SYS_exit while another thread goes on: the process lives until
 * its last thread has gone, and only then can it be reaped. (Both threads exit with the same
 * code: which thread's code the parent sees has changed between kernel versions.) */
static volatile pid_t main_tid_word = 1;
static int alive_fd, go_fd;
static void *outlive(void *arg) {
    (void)arg;
    /* The kernel clears main_tid_word, and wakes us, when the main thread has exited. */
    while (main_tid_word != 0)
        syscall(SYS_futex, &main_tid_word, FUTEX_WAIT, main_tid_word, NULL, NULL, 0);
    CHECK(write(alive_fd, "alive", 5) == 5);
    char c;
    CHECK(read(go_fd, &c, 1) == 0);
    syscall(SYS_exit, 7);
    return NULL;
}

static void leader_exits_first(void) {
    int alive[2], go[2];
    CHECK(pipe(alive) == 0 && pipe(go) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(alive[0]);
        close(go[1]);
        alive_fd = alive[1];
        go_fd = go[0];
        main_tid_word = gettid_();
        CHECK(syscall(SYS_set_tid_address, &main_tid_word) == getpid());
        pthread_t t;
        CHECK(pthread_create(&t, NULL, outlive, NULL) == 0);
        syscall(SYS_exit, 7);
    }
    close(alive[1]);
    close(go[0]);
    char buf[8];
    CHECK(read(alive[0], buf, sizeof buf) == 5 && memcmp(buf, "alive", 5) == 0);
    int st;
    CHECK(waitpid(pid, &st, WNOHANG) == 0); /* a thread is still running */
    close(go[1]);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7);
    close(alive[0]);
    printf("main thread exits first: the process lives on until its last thread exits\n");
}

int main(void) {
    sixteen();
    raw_clone();
    mutex_hammer();
    thread_signals();
    leader_exits_first();
    return 0;
}
