/* emu_child.h: the emulator's death tests (test_emu_self.cpp, race_self.cpp) run a case in a
 * forked child, because the emulator aborts the whole process on what it detects.
 * emu_run_child(fn, out): calls fn() in a child whose stdout and stderr are captured into out;
 * returns the child's wait status (the child exits 0 when fn returns). */
#pragma once
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

template <class F> static int emu_run_child(F fn, std::string &out) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        fn();
        fflush(stdout);
        _exit(0);
    }
    close(pfd[1]);
    char buf[4096];
    ssize_t k;
    while ((k = read(pfd[0], buf, sizeof buf)) > 0) out.append(buf, (size_t)k);
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}
