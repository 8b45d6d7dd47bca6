/*
 * Unit tests for the schedulers: the front's no-ops and lookup, and for
 * each backend its empty and single cases, its distribution, exclusions
 * (skipped entries are never returned and keep their turn), changes of the
 * held set during rotation, and a seeded stress run that checks the
 * invariants after thousands of random adds, removes, updates and picks.
 * Entries are single letters so that expected rotations read as strings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch/scheduler.h"

#define NENT 40

static const char *const backend_names[] = {
    "random", "round_robin", "weighted", "priority", "least_outstanding",
};
#define NBACKENDS (sizeof(backend_names) / sizeof(backend_names[0]))

/* Two independent sets, for comparing two schedulers fed alike. */
static struct sched_entry ent[2][NENT];
static char names[NENT][8];

static void
entries_reset(void)
{
	size_t i, j;

	memset(ent, 0, sizeof(ent));
	for (i = 0; i < NENT; i++) {
		if (i < 26)
			snprintf(names[i], sizeof(names[i]), "%c",
				 (char)('a' + i));
		else
			snprintf(names[i], sizeof(names[i]), "x%zu", i);
		for (j = 0; j < 2; j++) {
			ent[j][i].name = names[i];
			ent[j][i].weight = 1;
		}
	}
}

static size_t
index_of(const struct sched_entry *e)
{
	size_t set = e >= ent[1] ? 1 : 0;

	return (size_t)(e - ent[set]);
}

struct skipset {
	bool skip[NENT];
};

static bool
skip_fn(const struct sched_entry *e, void *arg)
{
	const struct skipset *ss = arg;

	return ss->skip[index_of(e)];
}

static bool
skip_all(const struct sched_entry *e, void *arg)
{
	return true;
}

static uint64_t
test_rand(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static struct scheduler *
new_sched(const char *name, uint64_t seed)
{
	const struct scheduler_ops *ops = scheduler_lookup(name);
	struct scheduler *s;

	assert_non_null(ops);
	s = scheduler_new(ops, seed);
	assert_non_null(s);
	assert_string_equal(scheduler_name(s), name);
	return s;
}

static void
add_n(struct scheduler *s, size_t set, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		scheduler_add(s, &ent[set][i]);
	assert_int_equal(scheduler_count(s), n);
}

static const char *
pick_name(struct scheduler *s, struct skipset *ss)
{
	struct sched_entry *e = scheduler_pick(s, ss ? skip_fn : NULL, ss);

	return e == NULL ? "-" : e->name;
}

/* Picks strlen(want) times; '-' stands for NULL. */
static void
expect_seq(struct scheduler *s, struct skipset *ss, const char *want)
{
	char got[256];
	size_t i, n = strlen(want);

	assert_true(n < sizeof(got));
	for (i = 0; i < n; i++)
		got[i] = pick_name(s, ss)[0];
	got[n] = '\0';
	assert_string_equal(got, want);
}

/* --- the front and every backend alike ------------------------------- */

static void
test_lookup(void **unused)
{
	size_t i;

	for (i = 0; i < NBACKENDS; i++) {
		const struct scheduler_ops *ops =
		    scheduler_lookup(backend_names[i]);
		assert_non_null(ops);
		assert_string_equal(ops->name, backend_names[i]);
	}
	assert_ptr_equal(scheduler_lookup("random"), &sched_random_ops);
	assert_ptr_equal(scheduler_lookup("weighted"), &sched_weighted_ops);
	assert_null(scheduler_lookup("fastest"));
	assert_null(scheduler_lookup(""));
	assert_null(scheduler_lookup("Round_Robin"));
	assert_null(scheduler_lookup(NULL));
}

static void
test_empty(void **unused)
{
	size_t i;

	for (i = 0; i < NBACKENDS; i++) {
		struct scheduler *s = new_sched(backend_names[i], 1);
		assert_int_equal(scheduler_count(s), 0);
		assert_null(scheduler_pick(s, NULL, NULL));
		assert_null(scheduler_pick(s, skip_all, NULL));
		scheduler_free(s);
	}
	scheduler_free(NULL);
}

static void
test_single_and_noops(void **unused)
{
	size_t i, k;

	for (i = 0; i < NBACKENDS; i++) {
		struct scheduler *s = new_sched(backend_names[i], 2);
		struct sched_entry *a;

		entries_reset();
		a = &ent[0][0];
		assert_false(scheduler_holds(s, a));
		/* Removing or updating what is not held changes nothing. */
		scheduler_remove(s, a);
		scheduler_update(s, a);
		assert_int_equal(scheduler_count(s), 0);
		scheduler_add(s, a);
		scheduler_add(s, a);
		assert_true(scheduler_holds(s, a));
		assert_int_equal(scheduler_count(s), 1);
		for (k = 0; k < 5; k++)
			assert_ptr_equal(scheduler_pick(s, NULL, NULL), a);
		assert_null(scheduler_pick(s, skip_all, NULL));
		assert_ptr_equal(scheduler_pick(s, NULL, NULL), a);
		scheduler_update(s, a);
		scheduler_remove(s, a);
		scheduler_remove(s, a);
		assert_false(scheduler_holds(s, a));
		assert_int_equal(scheduler_count(s), 0);
		assert_null(scheduler_pick(s, NULL, NULL));
		/* And it can come back. */
		scheduler_add(s, a);
		assert_ptr_equal(scheduler_pick(s, NULL, NULL), a);
		scheduler_free(s);
	}
}

/* Skipped entries are never returned; all skipped gives NULL. */
static void
test_skip_never_returned(void **unused)
{
	size_t i, k, j;
	uint64_t rng = 42;

	for (i = 0; i < NBACKENDS; i++) {
		struct scheduler *s = new_sched(backend_names[i], 3);
		struct skipset ss;

		entries_reset();
		for (j = 0; j < 6; j++) {
			ent[0][j].weight = (int)j + 1;
			ent[0][j].priority = (int)(j % 3);
		}
		add_n(s, 0, 6);
		for (k = 0; k < 3000; k++) {
			struct sched_entry *e;
			bool any = false;
			for (j = 0; j < 6; j++) {
				ss.skip[j] = test_rand(&rng) % 3 == 0;
				any = any || !ss.skip[j];
			}
			e = scheduler_pick(s, skip_fn, &ss);
			if (!any) {
				assert_null(e);
				continue;
			}
			assert_non_null(e);
			assert_true(index_of(e) < 6);
			assert_false(ss.skip[index_of(e)]);
		}
		for (j = 0; j < 6; j++)
			ss.skip[j] = true;
		assert_null(scheduler_pick(s, skip_fn, &ss));
		assert_int_equal(scheduler_count(s), 6);
		scheduler_free(s);
	}
}

/*
 * A skipped entry keeps its turn: two schedulers fed alike (the same
 * prefix of free picks); the first picks x freely, the second is told to
 * skip x and takes y instead, and its next free pick must be x.  (Not for
 * random, which has no turns.)
 */
static void
test_skip_keeps_turn(void **unused)
{
	size_t i, round, j, k;

	for (i = 1; i < NBACKENDS; i++) {
		for (round = 0; round < 30; round++) {
			struct scheduler *s0 = new_sched(backend_names[i], 4);
			struct scheduler *s1 = new_sched(backend_names[i], 4);
			struct skipset ss = {{false}};
			struct sched_entry *x, *y, *z;

			entries_reset();
			for (j = 0; j < 5; j++) {
				ent[0][j].weight = (int)(j % 2) + 1;
				ent[1][j].weight = ent[0][j].weight;
				ent[0][j].priority = j < 3 ? 1 : 2;
				ent[1][j].priority = ent[0][j].priority;
			}
			add_n(s0, 0, 5);
			add_n(s1, 1, 5);
			for (k = 0; k < round; k++)
				assert_int_equal(
				    index_of(scheduler_pick(s0, NULL, NULL)),
				    index_of(scheduler_pick(s1, NULL, NULL)));
			x = scheduler_pick(s0, NULL, NULL);
			assert_non_null(x);
			ss.skip[index_of(x)] = true;
			y = scheduler_pick(s1, skip_fn, &ss);
			assert_non_null(y);
			assert_int_not_equal(index_of(y), index_of(x));
			z = scheduler_pick(s1, NULL, NULL);
			assert_ptr_equal(z, &ent[1][index_of(x)]);
			scheduler_free(s0);
			scheduler_free(s1);
		}
	}
}

/* --- random ------------------------------------------------------------ */

static void
test_random_uniform(void **unused)
{
	struct scheduler *s = new_sched("random", 12345);
	size_t counts[NENT] = {0};
	size_t k, j, n = 5, picks = 100000;
	struct skipset ss = {{false}};

	entries_reset();
	add_n(s, 0, n);
	for (k = 0; k < picks; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	/* Expect 20000 each; 3% is about five standard deviations. */
	for (j = 0; j < n; j++) {
		assert_in_range(counts[j], 19400, 20600);
		counts[j] = 0;
	}
	/* With two skipped, the other three share evenly. */
	ss.skip[1] = ss.skip[3] = true;
	for (k = 0; k < 60000; k++)
		counts[index_of(scheduler_pick(s, skip_fn, &ss))]++;
	assert_int_equal(counts[1], 0);
	assert_int_equal(counts[3], 0);
	assert_in_range(counts[0], 19400, 20600);
	assert_in_range(counts[2], 19400, 20600);
	assert_in_range(counts[4], 19400, 20600);
	scheduler_free(s);
}

static void
test_random_deterministic(void **unused)
{
	struct scheduler *s0 = new_sched("random", 7);
	struct scheduler *s1 = new_sched("random", 7);
	struct scheduler *s2 = new_sched("random", 8);
	size_t k, same = 0;

	entries_reset();
	add_n(s0, 0, 8);
	add_n(s1, 1, 8);
	add_n(s2, 0, 0);
	for (k = 0; k < 8; k++)
		scheduler_add(s2, &ent[1][k]);
	for (k = 0; k < 200; k++) {
		struct sched_entry *a = scheduler_pick(s0, NULL, NULL);
		struct sched_entry *b = scheduler_pick(s1, NULL, NULL);
		struct sched_entry *c = scheduler_pick(s2, NULL, NULL);
		assert_int_equal(index_of(a), index_of(b));
		same += index_of(a) == index_of(c);
	}
	/* Another seed, another sequence: about 1 in 8 agree by chance. */
	assert_true(same < 100);
	scheduler_free(s0);
	scheduler_free(s1);
	scheduler_free(s2);
}

/* --- round robin ------------------------------------------------------- */

static void
test_rr_rotation(void **unused)
{
	struct scheduler *s = new_sched("round_robin", 0);
	size_t k;

	entries_reset();
	add_n(s, 0, 4);
	for (k = 0; k < 2500; k++)
		expect_seq(s, NULL, "abcd");
	scheduler_free(s);
}

static void
test_rr_changes(void **unused)
{
	struct scheduler *s = new_sched("round_robin", 0);
	struct skipset ss = {{false}};

	entries_reset();
	add_n(s, 0, 4);
	expect_seq(s, NULL, "ab");
	/* A newcomer joins at the end of the rotation. */
	scheduler_add(s, &ent[0][4]);
	expect_seq(s, NULL, "cdabecdabe");
	/* Removing the entry under the cursor moves the cursor on. */
	expect_seq(s, NULL, "cd");
	scheduler_remove(s, &ent[0][0]);
	expect_seq(s, NULL, "becdb");
	/* Removing one that is not next. */
	scheduler_remove(s, &ent[0][2]);
	expect_seq(s, NULL, "edbedb");
	/* Re-adding: back at the end. */
	scheduler_add(s, &ent[0][0]);
	expect_seq(s, NULL, "edb");
	/* Skipped ones keep their turn; the one taken goes to the back. */
	ss.skip[0] = true;
	expect_seq(s, &ss, "e");
	expect_seq(s, NULL, "adbeadbe");
	ss.skip[0] = ss.skip[1] = true;
	expect_seq(s, &ss, "d");
	expect_seq(s, NULL, "abedabed");
	ss.skip[3] = ss.skip[4] = true;
	expect_seq(s, &ss, "-");
	expect_seq(s, NULL, "abed");
	/* Down to one, then none. */
	scheduler_remove(s, &ent[0][0]);
	scheduler_remove(s, &ent[0][1]);
	scheduler_remove(s, &ent[0][3]);
	expect_seq(s, NULL, "eee");
	scheduler_remove(s, &ent[0][4]);
	expect_seq(s, NULL, "-");
	scheduler_add(s, &ent[0][2]);
	scheduler_add(s, &ent[0][1]);
	expect_seq(s, NULL, "cbcb");
	scheduler_free(s);
}

/* --- weighted ---------------------------------------------------------- */

static size_t
max_run(const char *seq, char c)
{
	size_t run = 0, best = 0;

	for (; *seq != '\0'; seq++) {
		run = *seq == c ? run + 1 : 0;
		if (run > best)
			best = run;
	}
	return best;
}

/*
 * Every cycle of sum(weights) picks gives each entry exactly its weight,
 * and the heaviest never runs longer than max_allowed in a row.
 */
static void
check_weighted(const int *w, size_t n, size_t max_allowed)
{
	struct scheduler *s = new_sched("weighted", 0);
	char seq[4096];
	size_t sum = 0, cycles, c, k, j, heavy = 0, len = 0;

	entries_reset();
	for (j = 0; j < n; j++) {
		ent[0][j].weight = w[j];
		sum += (size_t)w[j];
		if (w[j] > w[heavy])
			heavy = j;
	}
	add_n(s, 0, n);
	cycles = (sizeof(seq) - 1) / sum;
	if (cycles > 100)
		cycles = 100;
	for (c = 0; c < cycles; c++) {
		size_t counts[NENT] = {0};
		for (k = 0; k < sum; k++) {
			struct sched_entry *e = scheduler_pick(s, NULL, NULL);
			counts[index_of(e)]++;
			seq[len++] = e->name[0];
		}
		for (j = 0; j < n; j++)
			assert_int_equal(counts[j], (size_t)w[j]);
	}
	seq[len] = '\0';
	assert_true(max_run(seq, names[heavy][0]) <= max_allowed);
	scheduler_free(s);
}

static void
test_weighted_shares(void **unused)
{
	static const int w511[] = {5, 1, 1};
	static const int w321[] = {3, 2, 1};
	static const int w31[] = {3, 1};
	static const int weq[] = {1, 1, 1, 1};
	static const int wmix[] = {16, 9, 7, 4, 1, 1, 1};

	/* Five among two others cannot run shorter than three. */
	check_weighted(w511, 3, 3);
	check_weighted(w321, 3, 2);
	check_weighted(w31, 2, 3);
	check_weighted(weq, 4, 1);
	check_weighted(wmix, 7, 3);
}

static void
test_weighted_long_run(void **unused)
{
	struct scheduler *s = new_sched("weighted", 0);
	size_t counts[NENT] = {0};
	size_t k;

	entries_reset();
	ent[0][0].weight = 5;
	ent[0][1].weight = 3;
	ent[0][2].weight = 2;
	add_n(s, 0, 3);
	for (k = 0; k < 10000; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	assert_int_equal(counts[0], 5000);
	assert_int_equal(counts[1], 3000);
	assert_int_equal(counts[2], 2000);
	scheduler_free(s);
}

/* A newcomer, or one back from being down, neither floods nor starves. */
static void
test_weighted_join(void **unused)
{
	struct scheduler *s = new_sched("weighted", 0);
	size_t counts[NENT] = {0};
	size_t k;

	entries_reset();
	add_n(s, 0, 2);
	for (k = 0; k < 1000; k++)
		scheduler_pick(s, NULL, NULL);
	scheduler_add(s, &ent[0][2]);
	for (k = 0; k < 30; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	assert_in_range(counts[2], 9, 11);
	/* Down for a long while, then back: one third again, at once. */
	scheduler_remove(s, &ent[0][2]);
	for (k = 0; k < 5000; k++)
		scheduler_pick(s, NULL, NULL);
	scheduler_add(s, &ent[0][2]);
	memset(counts, 0, sizeof(counts));
	for (k = 0; k < 6; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	assert_in_range(counts[2], 1, 3);
	memset(counts, 0, sizeof(counts));
	for (k = 0; k < 300; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	assert_in_range(counts[2], 99, 101);
	scheduler_free(s);
}

static void
test_weighted_update(void **unused)
{
	struct scheduler *s = new_sched("weighted", 0);
	size_t counts[NENT] = {0};
	size_t k;

	entries_reset();
	add_n(s, 0, 2);
	for (k = 0; k < 10; k++)
		scheduler_pick(s, NULL, NULL);
	ent[0][0].weight = 3;
	scheduler_update(s, &ent[0][0]);
	/* Settles within a cycle or so, then 3:1. */
	for (k = 0; k < 8; k++)
		scheduler_pick(s, NULL, NULL);
	for (k = 0; k < 4000; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	assert_int_equal(counts[0], 3000);
	assert_int_equal(counts[1], 1000);
	/* And down again to 1:1. */
	ent[0][0].weight = 1;
	scheduler_update(s, &ent[0][0]);
	for (k = 0; k < 8; k++)
		scheduler_pick(s, NULL, NULL);
	memset(counts, 0, sizeof(counts));
	for (k = 0; k < 4000; k++)
		counts[index_of(scheduler_pick(s, NULL, NULL))]++;
	assert_int_equal(counts[0], 2000);
	assert_int_equal(counts[1], 2000);
	scheduler_free(s);
}

/*
 * Raising a weight takes effect at once: an entry just picked at weight 1
 * among ten would wait for the nine others, but at weight 10 its turn
 * comes within a couple of picks.
 */
static void
test_weighted_raise(void **unused)
{
	struct scheduler *s = new_sched("weighted", 0);
	struct sched_entry *e = NULL;
	size_t k, seen = 0;

	entries_reset();
	add_n(s, 0, 10);
	for (k = 0; k < 25; k++)
		e = scheduler_pick(s, NULL, NULL);
	assert_non_null(e);
	e->weight = 10;
	scheduler_update(s, e);
	for (k = 0; k < 3; k++)
		seen += scheduler_pick(s, NULL, NULL) == e;
	assert_true(seen >= 1);
	scheduler_free(s);
}

/* --- priority ---------------------------------------------------------- */

static void
test_priority(void **unused)
{
	struct scheduler *s = new_sched("priority", 0);
	struct skipset ss = {{false}};

	entries_reset();
	/* a, b at 1; c at 2; d at 3. */
	ent[0][0].priority = 1;
	ent[0][1].priority = 1;
	ent[0][2].priority = 2;
	ent[0][3].priority = 3;
	add_n(s, 0, 4);
	expect_seq(s, NULL, "ababababab");
	/* With a skipped, b; a keeps its turn, so a comes next. */
	expect_seq(s, NULL, "a");
	ss.skip[1] = true;
	expect_seq(s, &ss, "a");
	expect_seq(s, NULL, "baba");
	ss.skip[0] = true;
	expect_seq(s, &ss, "cc");
	ss.skip[2] = true;
	expect_seq(s, &ss, "d");
	ss.skip[3] = true;
	expect_seq(s, &ss, "-");
	expect_seq(s, NULL, "baba");
	/* The top group gone, the next takes over; back, it leads again. */
	scheduler_remove(s, &ent[0][0]);
	scheduler_remove(s, &ent[0][1]);
	expect_seq(s, NULL, "cccc");
	scheduler_remove(s, &ent[0][2]);
	expect_seq(s, NULL, "dd");
	scheduler_add(s, &ent[0][1]);
	expect_seq(s, NULL, "bb");
	/* A newcomer queues behind its equals. */
	scheduler_add(s, &ent[0][0]);
	scheduler_add(s, &ent[0][2]);
	expect_seq(s, NULL, "baba");
	/* A priority change takes effect at update. */
	ent[0][3].priority = 0;
	expect_seq(s, NULL, "ba");
	scheduler_update(s, &ent[0][3]);
	expect_seq(s, NULL, "ddd");
	ent[0][3].priority = 1;
	scheduler_update(s, &ent[0][3]);
	expect_seq(s, NULL, "badbad");
	/* Negative numbers are just lower. */
	ent[0][2].priority = -7;
	scheduler_update(s, &ent[0][2]);
	expect_seq(s, NULL, "cc");
	scheduler_free(s);
}

/* --- least outstanding ------------------------------------------------- */

static void
set_in_flight(struct scheduler *s, size_t i, unsigned n)
{
	ent[0][i].in_flight = n;
	scheduler_update(s, &ent[0][i]);
}

static void
test_least_outstanding(void **unused)
{
	struct scheduler *s = new_sched("least_outstanding", 0);
	struct skipset ss = {{false}};
	uint64_t rng = 99;
	size_t k, j;

	entries_reset();
	add_n(s, 0, 4);
	set_in_flight(s, 0, 3);
	set_in_flight(s, 1, 1);
	set_in_flight(s, 2, 2);
	set_in_flight(s, 3, 1);
	/* b and d tie at 1 and alternate while nobody counts the picks. */
	expect_seq(s, NULL, "bdbd");
	set_in_flight(s, 3, 5);
	expect_seq(s, NULL, "bb");
	ss.skip[1] = true;
	expect_seq(s, &ss, "c");
	set_in_flight(s, 1, 4);
	expect_seq(s, NULL, "cc");
	set_in_flight(s, 0, 0);
	expect_seq(s, NULL, "a");

	/*
	 * The dispatcher's loop: count each pick, complete some at random;
	 * every pick has the fewest in flight among those held.
	 */
	for (j = 0; j < 4; j++)
		set_in_flight(s, j, 0);
	for (k = 0; k < 10000; k++) {
		struct sched_entry *e = scheduler_pick(s, NULL, NULL);
		j = index_of(e);
		for (size_t o = 0; o < 4; o++)
			assert_true(e->in_flight <= ent[0][o].in_flight);
		set_in_flight(s, j, e->in_flight + 1);
		j = test_rand(&rng) % 4;
		if (ent[0][j].in_flight > 0 && test_rand(&rng) % 4 != 0)
			set_in_flight(s, j, ent[0][j].in_flight - 1);
	}
	scheduler_free(s);
}

/* --- stress ------------------------------------------------------------ */

static void
stress(const char *name, uint64_t seed)
{
	struct scheduler *s = new_sched(name, seed);
	bool held[NENT] = {false};
	size_t nheld = 0, k, j;
	uint64_t rng = seed;

	entries_reset();
	for (k = 0; k < 20000; k++) {
		uint64_t r = test_rand(&rng);
		struct sched_entry *e;
		struct skipset ss;
		bool any = false;

		j = (size_t)(r >> 8) % NENT;
		e = &ent[0][j];
		switch (r % 8) {
		case 0:
		case 1:
			scheduler_add(s, e);
			nheld += !held[j];
			held[j] = true;
			break;
		case 2:
			scheduler_remove(s, e);
			nheld -= held[j];
			held[j] = false;
			break;
		case 3:
			e->weight = (int)((r >> 20) % 10) + 1;
			e->priority = (int)((r >> 24) % 4);
			e->in_flight = (unsigned)((r >> 28) % 5);
			scheduler_update(s, e);
			break;
		default:
			for (j = 0; j < NENT; j++) {
				ss.skip[j] = test_rand(&rng) % 4 == 0;
				any = any || (held[j] && !ss.skip[j]);
			}
			e = scheduler_pick(s, skip_fn, &ss);
			if (!any) {
				assert_null(e);
				break;
			}
			assert_non_null(e);
			j = index_of(e);
			assert_true(held[j]);
			assert_false(ss.skip[j]);
			assert_true(scheduler_holds(s, e));
			for (size_t o = 0; o < NENT; o++) {
				const struct sched_entry *f = &ent[0][o];
				if (!held[o] || ss.skip[o])
					continue;
				if (strcmp(name, "priority") == 0)
					assert_true(e->priority <= f->priority);
				if (strcmp(name, "least_outstanding") == 0)
					assert_true(e->in_flight <=
						    f->in_flight);
			}
			break;
		}
		assert_int_equal(scheduler_count(s), nheld);
		for (j = 0; j < NENT; j++)
			assert_int_equal(scheduler_holds(s, &ent[0][j]),
					 held[j]);
	}
	scheduler_free(s);
}

static void
test_stress(void **unused)
{
	size_t i;

	for (i = 0; i < NBACKENDS; i++)
		stress(backend_names[i], 1000 + i);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lookup),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_single_and_noops),
	    cmocka_unit_test(test_skip_never_returned),
	    cmocka_unit_test(test_skip_keeps_turn),
	    cmocka_unit_test(test_random_uniform),
	    cmocka_unit_test(test_random_deterministic),
	    cmocka_unit_test(test_rr_rotation),
	    cmocka_unit_test(test_rr_changes),
	    cmocka_unit_test(test_weighted_shares),
	    cmocka_unit_test(test_weighted_long_run),
	    cmocka_unit_test(test_weighted_join),
	    cmocka_unit_test(test_weighted_update),
	    cmocka_unit_test(test_weighted_raise),
	    cmocka_unit_test(test_priority),
	    cmocka_unit_test(test_least_outstanding),
	    cmocka_unit_test(test_stress),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
