/*
 * membw.c — the memory bandwidth baseline for bench/search: reads a buffer
 * of the size of the vectors searched (n x dims float32), summing it with
 * the same 32-lane loop the search uses, from 1 and from P threads (the
 * search's leader and parallel workers), and prints bytes per second for
 * each: the most a scan of those bytes could do on this machine.
 *
 *   membw <bytes> <threads> <rounds>
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef float v8sf __attribute__((vector_size(32)));

typedef struct Part
{
	const float *data;
	size_t		n;
	double		sum;
} Part;

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
__attribute__((target_clones("avx2", "default")))
#endif
#endif
static double
read_all(const float *a, size_t n)
{
	v8sf		s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, x[4];
	float		lanes[8];
	double		sum = 0;
	size_t		i = 0;

	for (; i + 32 <= n; i += 32)
	{
		memcpy(x, a + i, sizeof(x));
		s0 += x[0];
		s1 += x[1];
		s2 += x[2];
		s3 += x[3];
	}
	s0 += s1 + s2 + s3;
	memcpy(lanes, &s0, sizeof(lanes));
	for (int l = 0; l < 8; l++)
		sum += lanes[l];
	for (; i < n; i++)
		sum += a[i];
	return sum;
}

static void *
run(void *arg)
{
	Part	   *p = arg;

	p->sum = read_all(p->data, p->n);
	return NULL;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The best of rounds reads of the whole buffer by threads threads, in bytes/s. */
static double
bandwidth(const float *data, size_t n, int threads, int rounds)
{
	double		best = 0;
	pthread_t	tid[64];
	Part		parts[64];

	for (int r = 0; r < rounds; r++)
	{
		double		t0 = now();

		for (int t = 0; t < threads; t++)
		{
			parts[t].data = data + n / threads * t;
			parts[t].n = t == threads - 1 ? n - n / threads * t : n / threads;
			pthread_create(&tid[t], NULL, run, &parts[t]);
		}
		for (int t = 0; t < threads; t++)
			pthread_join(tid[t], NULL);
		if (n * sizeof(float) / (now() - t0) > best)
			best = n * sizeof(float) / (now() - t0);
	}
	return best;
}

int
main(int argc, char **argv)
{
	size_t		bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : 614400000;
	int			threads = argc > 2 ? atoi(argv[2]) : 3;
	int			rounds = argc > 3 ? atoi(argv[3]) : 5;
	size_t		n = bytes / sizeof(float);
	float	   *data = malloc(n * sizeof(float));

	if (data == NULL || threads < 1 || threads > 64)
	{
		fprintf(stderr, "usage: membw <bytes> <threads 1..64> <rounds>\n");
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		data[i] = (float) (i % 1000) / 1000.0f;	/* touched: no page faults in the timing */
	printf("%.0f %.0f\n", bandwidth(data, n, 1, rounds), bandwidth(data, n, threads, rounds));
	free(data);
	return 0;
}
