/*
 * wakeup_cost: what one process waking another costs on this machine, on
 * the same CPU and across CPUs.
 *
 * Two processes pass a byte back and forth through two pipes, N round
 * trips, first both pinned to CPU 0, then one on CPU 0 and one on CPU 1.
 * Each round trip is two wake-ups.  On a VM a wake-up across CPUs can cost
 * far more than one on the same CPU (an idle vCPU must be woken by the
 * hypervisor), and every message a relay passes between processes pays
 * such wake-ups: bench/RESULTS.md section 9 reads the SMTP figures with it.
 *
 *   build/bench/wakeup_cost [ROUND_TRIPS]      (default 100000)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* The mean round trip in microseconds with the child on child_cpu. */
static double
round_trip_us(long n, int child_cpu)
{
	int ping[2], pong[2], status;
	char c = 0;
	double t0, t1;
	pid_t pid;
	long i;

	if (pipe(ping) != 0 || pipe(pong) != 0 || pin(0) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (pin(child_cpu) != 0)
			_exit(1);
		for (i = 0; i < n; i++)
			if (read(ping[0], &c, 1) != 1 ||
			    write(pong[1], &c, 1) != 1)
				_exit(1);
		_exit(0);
	}
	t0 = now_s();
	for (i = 0; i < n; i++)
		if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
			break;
	t1 = now_s();
	close(ping[0]);
	close(ping[1]);
	close(pong[0]);
	close(pong[1]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0 || i != n)
		return -1;
	return (t1 - t0) / (double)n * 1e6;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
	double same, cross;

	if (n < 1 || n > 100000000) {
		fprintf(stderr, "usage: wakeup_cost [ROUND_TRIPS]\n");
		return 2;
	}
	same = round_trip_us(n, 0);
	cross = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? round_trip_us(n, 1) : -1;
	if (same < 0) {
		fprintf(stderr, "wakeup_cost: pipe, fork or affinity failed\n");
		return 1;
	}
	printf("round trip, same CPU: %.2f us\n", same);
	if (cross >= 0)
		printf("round trip, CPU 0 and CPU 1: %.2f us\n", cross);
	return 0;
}
