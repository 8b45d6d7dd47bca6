/*
 * The SQLite backend's check and rebuild of damaged indexes.
 *
 * An index is a b-tree of its own, made from its table's rows: when one of
 * its pages is damaged (a bad sector, a torn write) every row is still
 * intact, and the index can be built again from the table without
 * guessing.  Before, a damaged page of messages_active failed the start-up
 * scan and serve exited: a relay that cannot start sends nothing.
 *
 * Which index: each is walked whole through a count that reads it alone
 * (store__index_probe); SQLITE_CORRUPT names it.  PRAGMA quick_check
 * would name the page, not the b-tree it belongs to.  The walk costs a
 * read of the index, so it runs only where damage was met, except for
 * messages_active at every open: the scan walks it anyway (and reads each
 * queued row besides), so that is a fraction of what the start reads.
 *
 * How: REINDEX (and DROP INDEX) first free the old index's pages, which
 * reads each of them, and so fail on the damaged one.  So the rebuild, in
 * one transaction, creates the index again under a temporary name from
 * its definition (this reads the whole table: if the table is damaged too
 * it fails, the transaction is rolled back, and the caller goes on as if
 * no rebuild had been tried), then, with SQLite's writable schema, drops
 * the old index's row from sqlite_schema and gives the new row the old
 * name and statement (an index made for a UNIQUE or PRIMARY KEY
 * constraint, sqlite_autoindex_T_N, has no statement: its new row has
 * none either and SQLite ties it to the constraint by its name), and
 * bumps the schema cookie so that every connection reads the schema
 * again.  The old index's pages, the damaged one among them, are left
 * unused in the file: nothing reads or writes them again, PRAGMA
 * integrity_check reports them ("never used") and VACUUM gives them back
 * (docs/internals/store.md, "Damaged pages").
 *
 * The rebuild is done at open, before the writer starts (or on a
 * connection of its own before the loop runs), never under load: a damaged
 * index met while running is found, logged and counted, and a row in meta
 * asks the next start to rebuild it (store__index_note).
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The key in meta under which a run leaves the damaged indexes it met. */
#define REINDEX_KEY "reindex_wanted"

/* Whether name is safe between double quotes (ours always are). */
static bool
plain_name(const char *name)
{
	return name != NULL && *name != '\0' && strchr(name, '"') == NULL;
}

/*
 * The WHERE of a partial index's statement, or NULL.  Our statements say
 * " WHERE " once, in upper case or not.
 */
static const char *
partial_where(const char *sql)
{
	const char *p, *last = NULL;

	for (p = sql; sql != NULL && *p != '\0'; p++)
		if (strncasecmp(p, " WHERE ", 7) == 0)
			last = p + 7;
	return last;
}

int
store__index_probe(sqlite3 *db, const char *tbl, const char *name,
		   const char *sql)
{
	const char *where = partial_where(sql);
	sqlite3_stmt *s = NULL;
	char *q;
	int rc;

	if (!plain_name(tbl) || !plain_name(name))
		return SQLITE_MISUSE;
	/*
	 * A count through the index alone (a partial index's own WHERE is
	 * implied, so no row of the table is read): every page of its
	 * b-tree is visited.
	 */
	q = xasprintf("SELECT count(*) FROM \"%s\" INDEXED BY \"%s\"%s%s", tbl,
		      name, where != NULL ? " WHERE " : "",
		      where != NULL ? where : "");
	rc = sqlite3_prepare_v2(db, q, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	sqlite3_finalize(s);
	free(q);
	return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

void
store__indexes_cleanup(struct store_indexes *x)
{
	size_t i;

	for (i = 0; i < x->n; i++) {
		free(x->v[i].name);
		free(x->v[i].tbl);
		free(x->v[i].sql);
	}
	free(x->v);
	memset(x, 0, sizeof(*x));
}

static void
indexes_push(struct store_indexes *x, const char *name, const char *tbl,
	     const char *sql)
{
	if (x->n == x->cap) {
		x->cap = x->cap == 0 ? 8 : x->cap * 2;
		x->v = xreallocarray(x->v, x->cap, sizeof(*x->v));
	}
	x->v[x->n].name = xstrdup(name);
	x->v[x->n].tbl = xstrdup(tbl);
	x->v[x->n].sql = sql != NULL ? xstrdup(sql) : NULL;
	x->n++;
}

/* Whether name is in the comma-separated list (NULL: every name). */
static bool
listed(const char *list, const char *name)
{
	size_t len = strlen(name);
	const char *p;

	if (list == NULL)
		return true;
	for (p = list; (p = strstr(p, name)) != NULL; p += len)
		if ((p == list || p[-1] == ',') &&
		    (p[len] == ',' || p[len] == '\0'))
			return true;
	return false;
}

int
store__index_check(sqlite3 *db, const char *only, struct store_indexes *out)
{
	struct store_indexes all = {0};
	sqlite3_stmt *s = NULL;
	size_t i;
	int rc, prc;

	/* The list first: a probe that fails must not end its statement. */
	rc = sqlite3_prepare_v2(db,
				"SELECT name, tbl_name, sql FROM sqlite_schema"
				" WHERE type = 'index' AND rootpage > 0"
				" ORDER BY rowid",
				-1, &s, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		const char *tbl = (const char *)sqlite3_column_text(s, 1);

		rc = SQLITE_OK;
		if (name != NULL && tbl != NULL && listed(only, name))
			indexes_push(&all, name, tbl,
				     (const char *)sqlite3_column_text(s, 2));
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		goto out;
	rc = SQLITE_OK;
	for (i = 0; rc == SQLITE_OK && i < all.n; i++) {
		prc = store__index_probe(db, all.v[i].tbl, all.v[i].name,
					 all.v[i].sql);
		if (store__is_damage(prc))
			indexes_push(out, all.v[i].name, all.v[i].tbl,
				     all.v[i].sql);
		else if (prc != SQLITE_OK)
			rc = prc;
	}
out:
	store__indexes_cleanup(&all);
	return rc;
}

/*
 * The statement that makes index x again under the name tmp: its own,
 * renamed, or for a constraint's index one from its columns (PRAGMA
 * index_xinfo), UNIQUE as the constraint is.  NULL if it cannot be made.
 */
static char *
tmp_sql(sqlite3 *db, const struct store_index *x, const char *tmp)
{
	static const char *const head[] = {"CREATE INDEX ",
					   "CREATE UNIQUE INDEX "};
	sqlite3_stmt *s = NULL;
	struct buf cols;
	const char *rest;
	char *q, *out = NULL;
	size_t i, len;
	int rc;

	if (x->sql != NULL) {
		for (i = 0; i < ARRAY_SIZE(head); i++) {
			len = strlen(head[i]);
			rest = x->sql + len;
			if (strncasecmp(x->sql, head[i], len) == 0 &&
			    strncmp(rest, x->name, strlen(x->name)) == 0 &&
			    rest[strlen(x->name)] == ' ')
				return xasprintf("%s%s%s", head[i], tmp,
						 rest + strlen(x->name));
		}
		return NULL;
	}
	buf_init(&cols, 4096);
	q = xasprintf("PRAGMA index_xinfo(\"%s\")", x->name);
	rc = sqlite3_prepare_v2(db, q, -1, &s, NULL);
	free(q);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(s, 2);
		const char *coll = (const char *)sqlite3_column_text(s, 4);

		rc = SQLITE_OK;
		if (sqlite3_column_int(s, 5) == 0)
			continue; /* the rowid, not a key column */
		if (!plain_name(col) || !plain_name(coll) ||
		    buf_appendf(&cols, "%s\"%s\" COLLATE \"%s\"%s",
				cols.len > 0 ? ", " : "", col, coll,
				sqlite3_column_int(s, 3) ? " DESC" : "") != 0)
			rc = SQLITE_MISUSE;
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE && cols.len > 0)
		out = xasprintf("CREATE UNIQUE INDEX %s ON \"%s\"(%.*s)", tmp,
				x->tbl, (int)cols.len, cols.p);
	buf_cleanup(&cols);
	return out;
}

/* Binds text values to ?1.. and steps sql once. */
static int
exec_bound(sqlite3 *db, const char *sql, const char *a, const char *b,
	   const char *c)
{
	const char *v[] = {a, b, c};
	sqlite3_stmt *s = NULL;
	size_t i;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	for (i = 0; rc == SQLITE_OK && i < ARRAY_SIZE(v); i++)
		if (sqlite3_bind_parameter_count(s) > (int)i)
			rc = sqlite3_bind_text(s, (int)i + 1, v[i], -1,
					       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The schema cookie plus one, so every connection reads it again. */
static int
bump_cookie(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	char *sql;
	int rc, v = 0;

	rc = sqlite3_prepare_v2(db, "PRAGMA schema_version", -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		v = sqlite3_column_int(s, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_OK)
		return rc;
	sql = xasprintf("PRAGMA schema_version = %d", v + 1);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	free(sql);
	return rc;
}

/*
 * The rebuild of the indexes in x, inside the open transaction (see the
 * top of the file).  Leaves the schema writable: the caller ends the
 * transaction, then schema_reload().  An SQLite code; *what says which
 * step failed.
 */
static int
rebuild(sqlite3 *db, const struct store_indexes *x, int *defensive,
	const char **what)
{
	char tmp[48], *sql;
	size_t i;
	int rc = SQLITE_OK;

	*what = "create";
	for (i = 0; rc == SQLITE_OK && i < x->n; i++) {
		snprintf(tmp, sizeof(tmp), "shivneri_reindex_%zu", i);
		sql = tmp_sql(db, &x->v[i], tmp);
		rc = sql != NULL ? sqlite3_exec(db, sql, NULL, NULL, NULL)
				 : SQLITE_MISUSE;
		free(sql);
	}
	if (rc != SQLITE_OK)
		return rc;
	*what = "schema";
	(void)sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, -1, defensive);
	(void)sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 0, NULL);
	(void)sqlite3_db_config(db, SQLITE_DBCONFIG_WRITABLE_SCHEMA, 1, NULL);
	for (i = 0; rc == SQLITE_OK && i < x->n; i++) {
		snprintf(tmp, sizeof(tmp), "shivneri_reindex_%zu", i);
		rc = exec_bound(db,
				"DELETE FROM sqlite_schema WHERE type = 'index'"
				" AND name = ?1",
				x->v[i].name, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = exec_bound(db,
					"UPDATE sqlite_schema SET name = ?1,"
					" sql = ?2 WHERE type = 'index' AND"
					" name = ?3",
					x->v[i].name, x->v[i].sql, tmp);
	}
	if (rc == SQLITE_OK)
		rc = bump_cookie(db);
	return rc;
}

/*
 * After the rebuild's transaction ended (committed or rolled back): the
 * schema read again on this connection, as SQLite documents for
 * writable_schema = RESET, which also turns writing it off; other
 * connections see the bumped cookie.  Then defensive as it was.
 */
static void
schema_reload(sqlite3 *db, int defensive)
{
	if (sqlite3_exec(db, "PRAGMA writable_schema = RESET", NULL, NULL,
			 NULL) != SQLITE_OK)
		log_warnx("- store schema_reload_failed msg=\"%s\"",
			  sqlite3_errmsg(db));
	(void)sqlite3_db_config(db, SQLITE_DBCONFIG_WRITABLE_SCHEMA, 0, NULL);
	(void)sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, defensive, NULL);
}

/*
 * The indexes a previous run met damaged (meta's REINDEX_KEY), as a
 * comma-separated list, or NULL.  Unreadable meta: NULL (the probes of the
 * open then find what they find).
 */
static char *
noted(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	char *v = NULL;

	if (sqlite3_prepare_v2(
		db, "SELECT value FROM meta WHERE key = '" REINDEX_KEY "'", -1,
		&s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW &&
	    sqlite3_column_type(s, 0) == SQLITE_TEXT)
		v = store__col_strdup(s, 0);
	sqlite3_finalize(s);
	return v;
}

int
store__reindex(sqlite3 *db, const char *only, const char *reason)
{
	struct store_indexes x = {0};
	const char *what = "check";
	char *hint = NULL, *list = NULL;
	size_t i;
	int rc, defensive = 0;

	/* Found in a read transaction: a damaged read poisons a write one. */
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		hint = noted(db);
	if (only != NULL)
		list = hint != NULL ? xasprintf("%s,%s", only, hint)
				    : xstrdup(only);
	if (rc == SQLITE_OK)
		rc = store__index_check(db, list, &x);
	store__end_txn(db);
	if (rc != SQLITE_OK)
		goto fail;
	if (x.n > 0) {
		rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = rebuild(db, &x, &defensive, &what);
		if (rc == SQLITE_OK) {
			what = "commit";
			rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		}
		store__end_txn(db);
		schema_reload(db, defensive);
		if (rc != SQLITE_OK)
			goto fail;
	}
	for (i = 0; i < x.n; i++)
		log_warnx("- store reindexed index=%s table=%s reason=%s: a "
			  "page of the index was damaged; built again from "
			  "the table",
			  x.v[i].name, x.v[i].tbl,
			  hint != NULL && listed(hint, x.v[i].name)
			      ? "noted_while_running"
			      : reason);
	/*
	 * Not in the rebuild's transaction: meta's own index may be one of
	 * those rebuilt, and this connection reads the new schema only once
	 * that transaction is over.  A crash before it: the next start finds
	 * the noted indexes whole and forgets them then.
	 */
	if (hint != NULL &&
	    sqlite3_exec(db, "DELETE FROM meta WHERE key = '" REINDEX_KEY "'",
			 NULL, NULL, NULL) != SQLITE_OK)
		log_warnx("- store reindex_note_left msg=\"%s\"",
			  sqlite3_errmsg(db));
	rc = (int)x.n;
	goto out;
fail:
	log_warnx("- store reindex_failed step=%s reason=%s rc=%d msg=\"%s\"",
		  what, reason, rc, sqlite3_errstr(rc));
	store__end_txn(db);
	rc = store__sqlite_errno(rc);
out:
	store__indexes_cleanup(&x);
	free(hint);
	free(list);
	return rc;
}

int
store__index_note(sqlite3 *db, char *names, size_t namesz)
{
	struct store_indexes x = {0};
	size_t i, at = 0;
	int rc, n;

	names[0] = '\0';
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = store__index_check(db, NULL, &x);
	store__end_txn(db);
	if (rc != SQLITE_OK) {
		store__indexes_cleanup(&x);
		return store__sqlite_errno(rc);
	}
	for (i = 0; i < x.n && at < namesz; i++)
		at += (size_t)snprintf(names + at, namesz - at, "%s%s",
				       i > 0 ? "," : "", x.v[i].name);
	n = (int)x.n;
	store__indexes_cleanup(&x);
	/*
	 * For the next start, which rebuilds them (the start does not read
	 * every index).  Best effort: meta's own index may be the damaged
	 * one; the start then finds it when it reads meta.
	 */
	if (n > 0 && at < namesz) {
		rc = exec_bound(
		    db,
		    "INSERT OR REPLACE INTO meta VALUES ('" REINDEX_KEY
		    "', ?1)",
		    names, NULL, NULL);
		if (rc != SQLITE_OK)
			log_warnx("- store reindex_note_failed rc=%d "
				  "msg=\"%s\"",
				  rc, sqlite3_errstr(rc));
	}
	return n;
}
