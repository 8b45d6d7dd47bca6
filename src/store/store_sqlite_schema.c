/*
 * The SQLite backend's database: opening it, the data folder's marker, the
 * schema and its migrations.
 *
 * The database is DIR/shivneri.db in WAL mode with synchronous=FULL, so a
 * COMMIT that returned is on disk.  SQLite happily opens a zero-byte or
 * missing file as a new, empty database, which after a bad restore or a
 * truncation would silently drop every acknowledged message.  So the first
 * time a store is created in a folder we write DIR/shivneri.store, a marker
 * naming the database's identity (a random id kept in its meta table); at
 * every later open a marker without a non-empty database, or with a
 * database of another identity, is refused with an error that says what to
 * do, and a database path that is a folder is named as such.  A database
 * that predates the marker gets one at its next open.
 *
 * Migrations run forward in one transaction with the new user_version; a
 * database from a newer schema is refused (STORE_ENEWER).  Recovery and
 * the start-up scan, which read the rows themselves and so must go past a
 * damaged page, are store_sqlite_scan.c.  A damaged index is built again
 * from its table before they run (store_sqlite_reindex.c): messages_active
 * is checked at every open, the others when the open's reads meet damage.
 * Every failure here fails store_open; nothing is fatal.
 *
 * One store has one server: before anything else the open takes an
 * exclusive flock() on DIR/shivneri.lock and keeps it until close.  SQLite
 * lets two processes share a WAL database, so without it a second server
 * started on the same folder recovered the first one's "sending" messages
 * and both dispatched the queue: duplicates with nothing on record.
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_SIZE_STR "8192" /* for new databases; see db_setup() */
#define STORE_ID_MAX 64
#define MARKER_MAX 4096

/*
 * The schema, one migration per version: migrations[i] takes a database
 * from user_version i to i + 1.  Append, never edit a released one.
 */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE messages ("
    " rowid INTEGER PRIMARY KEY,"
    " id TEXT UNIQUE NOT NULL,"
    " status INTEGER NOT NULL,"
    " mail_from TEXT NOT NULL,"
    " rcpt TEXT NOT NULL,"
    " header_from TEXT,"
    " subject TEXT,"
    " to_json TEXT,"
    " tags_json TEXT,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " next_ms INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " round INTEGER NOT NULL DEFAULT 0,"
    " tried TEXT,"
    " provider TEXT,"
    " provider_message_id TEXT,"
    " error TEXT,"
    /* Last, so that scans of the small columns never touch it. */
    " mime BLOB);"
    /* Written as an OR so that "status = 0" queries can prove it. */
    "CREATE INDEX messages_active ON messages(status, id)"
    " WHERE status = 0 OR status = 1;"
    "CREATE TABLE attempts ("
    " message_rowid INTEGER NOT NULL"
    "  REFERENCES messages(rowid) ON DELETE CASCADE,"
    " n INTEGER NOT NULL,"
    " provider TEXT,"
    " at_ms INTEGER NOT NULL,"
    " outcome INTEGER NOT NULL,"
    " detail TEXT,"
    " PRIMARY KEY (message_rowid, n)) WITHOUT ROWID;"
    "CREATE TABLE idempotency ("
    " key TEXT PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL);"
    "CREATE INDEX idempotency_created ON idempotency(created_ms);"
    "CREATE TABLE status_counts ("
    " status INTEGER PRIMARY KEY,"
    " n INTEGER NOT NULL);"
    /*
     * Kept by the writer, not by triggers: it tallies each batch's changes
     * and adds them in one UPDATE per status touched before its COMMIT.
     * Whatever changes a status outside a batch (recovery) adjusts the
     * counts in the same transaction.
     */
    "INSERT INTO status_counts VALUES (0, 0), (1, 0), (2, 0), (3, 0);",
    /*
     * 2: the database's identity, which the folder's marker names, and an
     * index of finished messages by age for retention.  The index is
     * partial: submissions (queued) never touch it, a message enters it
     * once, when it is delivered or failed.
     */
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY,"
    " value);"
    "INSERT INTO meta VALUES ('store_id', lower(hex(randomblob(16))));"
    "CREATE INDEX messages_done ON messages(updated_ms)"
    " WHERE status = 2 OR status = 3;",
    /*
     * 3: idempotency keys per scope (the API key that sent them), with the
     * request's digest.  SQLite cannot change a primary key, so the table
     * is made anew.  Keys kept before had no scope: they take the
     * anonymous one (right for a server without API keys, the only case
     * where a key could be meant for everyone) and no digest (a retry
     * still gets its first id).
     */
    "CREATE TABLE idempotency_v3 ("
    " scope TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " message_id TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " body_hash BLOB,"
    " PRIMARY KEY (scope, key));"
    "INSERT INTO idempotency_v3 (scope, key, message_id, created_ms)"
    " SELECT '" STORE_IDEM_SCOPE_ANONYMOUS "', key, message_id, created_ms"
    " FROM idempotency;"
    "DROP TABLE idempotency;"
    "ALTER TABLE idempotency_v3 RENAME TO idempotency;"
    "CREATE INDEX idempotency_created ON idempotency(created_ms);",
    /*
     * 4: a retried message's budget starts again (budget_ms, NULL: from
     * created_ms: message_ttl_s counts from it), and the webhooks' outbox:
     * each row one JSON body to POST, written in the transaction of the
     * change it tells of, deleted once the receiver took it.
     */
    "ALTER TABLE messages ADD COLUMN budget_ms INTEGER;"
    "CREATE TABLE outbox ("
    " seq INTEGER PRIMARY KEY,"
    " created_ms INTEGER NOT NULL,"
    " next_ms INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " body TEXT NOT NULL);",
    /*
     * 5: the sender's claim finds due rows (next_ms <= now) by this index
     * and takes them in its order, instead of scanning every row not yet
     * due about once a second (store_sqlite_outbox.c, OB_CLAIM).
     */
    "CREATE INDEX outbox_due ON outbox(next_ms, seq);",
    /*
     * 6: the body moves out of the message's row.  A status update
     * rewrites the page of its row, in the WAL and again at checkpoint;
     * with the body inline that page held two or three messages, so a
     * relayed message's two updates wrote about as many bytes as its
     * insert.  A row without its body is a few hundred bytes: one page
     * now holds the rows of a whole batch of updates.  The body is
     * written once, with the message, and goes with it (the cascade).
     */
    "CREATE TABLE bodies ("
    " rowid INTEGER PRIMARY KEY"
    "  REFERENCES messages(rowid) ON DELETE CASCADE,"
    " mime BLOB NOT NULL);"
    "INSERT INTO bodies (rowid, mime)"
    " SELECT rowid, mime FROM messages WHERE mime IS NOT NULL;"
    "ALTER TABLE messages DROP COLUMN mime;",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) ==
		   STORE_SCHEMA_VERSION,
	       "STORE_SCHEMA_VERSION must count the migrations");

bool
store__is_damage(int rc)
{
	return (rc & 0xff) == SQLITE_CORRUPT;
}

void
store__end_txn(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int
store__sqlite_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		return -EACCES;
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_CONSTRAINT:
	case SQLITE_RANGE:
	case SQLITE_MISMATCH:
		return -EINVAL;
	case SQLITE_TOOBIG:
		return -EFBIG;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EACCES;
	default:
		return -EIO;
	}
}

int
store__db_fail(sqlite3 *db, int rc, const char *what)
{
	/*
	 * A damaged page is met again by every read of it, and some reads
	 * come from outsiders (a /metrics scrape, which takes no key, reads
	 * the oldest queued message): at most a line every 10 s for those.
	 */
	static struct log_rl damaged_rl = LOG_RL_INIT;

	if (store__is_damage(rc))
		(void)log_warnx_rl(&damaged_rl, 10000,
				   "- store sqlite_error op=\"%s\" rc=%d "
				   "msg=\"%s\"",
				   what, rc,
				   db != NULL ? sqlite3_errmsg(db)
					      : sqlite3_errstr(rc));
	else
		log_warnx("- store sqlite_error op=\"%s\" rc=%d msg=\"%s\"",
			  what, rc,
			  db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	return store__sqlite_errno(rc);
}

int
store__exec_sql(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc;

	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		log_warnx("- store sqlite_error rc=%d msg=\"%s\"", rc,
			  msg != NULL ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return store__sqlite_errno(rc);
	}
	return 0;
}

/* Ends a failed transaction, if SQLite has not ended it already. */
static void
db_rollback(sqlite3 *db)
{
	int rc;

	if (sqlite3_get_autocommit(db))
		return;
	rc = sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		log_warnx("- store rollback_failed rc=%d msg=\"%s\"", rc,
			  sqlite3_errmsg(db));
}

/* The one text value a statement returns, copied into out. */
static int
query_text(sqlite3 *db, const char *sql, char *out, size_t outsz)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -ENOENT : store__db_fail(db, rc, sql);
		goto out;
	}
	t = sqlite3_column_text(s, 0);
	if (t == NULL || (size_t)sqlite3_column_bytes(s, 0) >= outsz) {
		rc = -EINVAL;
		goto out;
	}
	snprintf(out, outsz, "%s", (const char *)t);
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

/*
 * The store id the marker names: 0, -ENOENT when there is no marker, or
 * another error when it cannot be read or makes no sense (which refuses to
 * start: the folder may hold a store we cannot vouch for).
 */
static int
marker_read(struct store_backend *be, char *id, size_t idsz)
{
	char *text = NULL, *p, *end;
	size_t len;
	int rc;

	rc = file_read_all(be->marker, MARKER_MAX, &text, &len);
	if (rc != 0) {
		if (rc != -ENOENT)
			log_warnx("- store marker_unreadable path=%s err=%s",
				  be->marker, strerror(-rc));
		return rc;
	}
	p = strstr(text, "\nstore_id=");
	end = p != NULL ? strchr(p + 10, '\n') : NULL;
	if (end == NULL || end == p + 10 || (size_t)(end - (p + 10)) >= idsz) {
		log_warnx("- store marker_invalid path=%s", be->marker);
		free(text);
		return -EINVAL;
	}
	snprintf(id, idsz, "%.*s", (int)(end - (p + 10)), p + 10);
	free(text);
	return 0;
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Writes the marker durably (a temporary file, fsync, rename, fsync of
 * the folder), once per store, so a crash leaves either no marker (the
 * next open writes it) or a whole one.
 */
static int
marker_write(struct store_backend *be, const char *id)
{
	char *tmp = xasprintf("%s.tmp", be->marker), *text;
	int fd = -1, dfd = -1, rc;

	text = xasprintf("# This folder holds a Shivneri store, shivneri.db.\n"
			 "# While this file is here, a missing or empty "
			 "shivneri.db is refused\n# at start-up instead of "
			 "starting an empty store.\nstore_id=%s\n",
			 id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		rc = -errno;
		goto out;
	}
	if ((rc = write_all(fd, text, strlen(text))) != 0)
		goto out;
	if (fsync(fd) != 0 || close(fd) != 0) {
		rc = -errno;
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, be->marker) != 0) {
		rc = -errno;
		goto out;
	}
	dfd = open(be->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1 || fsync(dfd) != 0) {
		rc = -errno;
		goto out;
	}
	rc = 0;
out:
	if (rc != 0)
		log_warnx("- store marker_write_failed path=%s err=%s",
			  be->marker, strerror(-rc));
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	free(text);
	free(tmp);
	return rc;
}

/*
 * Checks the database path before SQLite sees it (SQLite would create a
 * missing file and report a folder as "unable to open").  *size is the
 * file's size, or -1 when it does not exist.
 */
static int
path_check(struct store_backend *be, int64_t *size)
{
	struct stat sb;

	*size = -1;
	if (stat(be->path, &sb) != 0) {
		if (errno == ENOENT)
			return 0;
		log_warnx("- store stat_failed path=%s err=%s", be->path,
			  strerror(errno));
		return -errno;
	}
	if (S_ISDIR(sb.st_mode)) {
		log_warnx("- store db_is_folder path=%s", be->path);
		return -EISDIR;
	}
	if (!S_ISREG(sb.st_mode)) {
		log_warnx("- store db_not_a_file path=%s", be->path);
		return -EINVAL;
	}
	*size = (int64_t)sb.st_size;
	return 0;
}

/*
 * The store's files are the messages: no one but the server's user may
 * read them, whatever the umask or the folder's mode.  A new database is
 * made here, empty and 0600, before SQLite opens it, because SQLite
 * creates it with 0644 less the umask and gives its -wal and -shm files
 * the database's mode.  Files left readable by an older version are
 * narrowed to 0600; one we cannot change (another owner) is logged, not
 * refused: the server may still be allowed to use it.
 */
static int
files_private(struct store_backend *be, bool create)
{
	const char *suffix[] = {"", "-wal", "-shm", NULL};
	struct stat sb;
	char *p;
	size_t i;
	int fd, err;

	if (create) {
		fd =
		    open(be->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1 && errno != EEXIST) {
			err = errno;
			log_warnx("- store create_failed path=%s err=%s",
				  be->path, strerror(err));
			return -err;
		}
		if (fd != -1)
			(void)close(fd);
	}
	/* The database, its WAL and index, and the marker (NULL). */
	for (i = 0; i < ARRAY_SIZE(suffix); i++) {
		p = suffix[i] != NULL ? xasprintf("%s%s", be->path, suffix[i])
				      : xstrdup(be->marker);
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) &&
		    (sb.st_mode & 077) != 0) {
			if (chmod(p, sb.st_mode & 0700) == 0)
				log_info("- store file_mode_narrowed path=%s "
					 "was=%03o now=%03o",
					 p, (unsigned)(sb.st_mode & 0777),
					 (unsigned)(sb.st_mode & 0700));
			else
				log_warnx("- store file_mode_open path=%s "
					  "mode=%03o err=%s",
					  p, (unsigned)(sb.st_mode & 0777),
					  strerror(errno));
		}
		free(p);
	}
	return 0;
}

/*
 * Migrates forward in one transaction; refuses a newer schema, and an
 * empty one when must_exist (the marker says a store was here).
 */
static int
migrate(struct store_backend *be, bool must_exist)
{
	char version_s[16], *sql = NULL;
	long version;
	size_t i;
	int rc;

	if ((rc = store__exec_sql(be->db, "BEGIN IMMEDIATE")) != 0)
		return rc;
	rc = query_text(be->db, "PRAGMA user_version", version_s,
			sizeof(version_s));
	if (rc != 0)
		goto fail;
	version = strtol(version_s, NULL, 10);
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		log_warnx(
		    "- store schema_too_new path=%s version=%ld known=%d: "
		    "refusing a database written by a newer shivneri",
		    be->path, version, STORE_SCHEMA_VERSION);
		rc = STORE_ENEWER;
		goto fail;
	}
	if (version == 0 && must_exist) {
		log_warnx("- store db_empty path=%s marker=%s", be->path,
			  be->marker);
		rc = STORE_EMISSING;
		goto fail;
	}
	for (i = (size_t)version; i < ARRAY_SIZE(migrations); i++) {
		if ((rc = store__exec_sql(be->db, migrations[i])) != 0)
			goto fail;
		log_info("- store migrated path=%s version=%zu", be->path,
			 i + 1);
	}
	sql = xasprintf("PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	if ((rc = store__exec_sql(be->db, sql)) != 0)
		goto fail;
	free(sql);
	return store__exec_sql(be->db, "COMMIT");
fail:
	free(sql);
	db_rollback(be->db);
	return rc;
}

/*
 * SQLite refuses strings, blobs and rows longer than its length limit
 * (SQLITE_TOOBIG); the default, 10^9, is also the most a build allows.  It
 * is set to what the configured cap needs, so a body within the cap always
 * fits and anything bigger fails its bind loudly.
 */
static int
set_length_limit(struct store_backend *be)
{
	int64_t want = be->max_message_bytes + ROW_HEADROOM;
	int got;

	if (want > INT_MAX)
		return -EOVERFLOW;
	(void)sqlite3_limit(be->db, SQLITE_LIMIT_LENGTH, (int)want);
	got = sqlite3_limit(be->db, SQLITE_LIMIT_LENGTH, -1);
	if (got < want) {
		log_warnx("- store length_limit want=%lld got=%d",
			  (long long)want, got);
		return -EOVERFLOW;
	}
	return 0;
}

/* Opens the connection and sets the pragmas every open needs. */
static int
db_setup(struct store_backend *be)
{
	char mode[16];
	int rc;

	rc = sqlite3_open_v2(be->path, &be->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		if (be->db == NULL)
			return -ENOMEM;
		return store__db_fail(be->db, rc, "open");
	}
	if (sqlite3_extended_result_codes(be->db, 1) != SQLITE_OK ||
	    sqlite3_busy_timeout(be->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
		return store__db_fail(be->db, sqlite3_errcode(be->db), "open");
	if ((rc = set_length_limit(be)) != 0)
		return rc;
	/*
	 * Before the first table exists (later it is a no-op): a 2-3 KB
	 * message, the common size, fills a third of an 8 KiB page but needs a
	 * 4 KiB page of its own, so 8 KiB pages write about a third fewer
	 * bytes and half the WAL frames per message, in the WAL and again at
	 * checkpoint.  16 KiB costs more than it saves: the pages every
	 * commit rewrites (index and interior pages) grow with it.
	 */
	rc = store__exec_sql(be->db, "PRAGMA page_size = " PAGE_SIZE_STR);
	if (rc != 0)
		return rc;
	rc =
	    query_text(be->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (rc != 0)
		return rc;
	if (strcmp(mode, "wal") != 0) {
		log_warnx("- store no_wal path=%s", be->path);
		return -EIO;
	}
	/* The WAL shrinks back to 64 MiB after a burst is checkpointed. */
	return store__exec_sql(be->db,
			       "PRAGMA synchronous = FULL;"
			       "PRAGMA journal_size_limit = 67108864;"
			       /* Checkpoints run inside a commit: small ones
				* (2 MiB of 8 KiB pages) keep the tail of
				* acknowledgement latency short. */
			       "PRAGMA wal_autocheckpoint = 250;"
			       "PRAGMA foreign_keys = ON;");
}

/*
 * The marker's side of opening: with a marker the database must be the
 * one it names; without one, this is a new store (or one from before the
 * marker) and the marker is written now that the schema is committed.
 */
static int
identity_check(struct store_backend *be, bool have_marker,
	       const char *marker_id)
{
	char id[STORE_ID_MAX];
	int rc;

	rc = query_text(be->db, "SELECT value FROM meta WHERE key = 'store_id'",
			id, sizeof(id));
	if (rc != 0) {
		log_warnx("- store no_store_id path=%s", be->path);
		return rc == -ENOENT ? -EIO : rc;
	}
	if (!have_marker)
		return marker_write(be, id);
	if (strcmp(id, marker_id) != 0) {
		log_warnx("- store db_foreign path=%s store_id=%s marker=%s "
			  "marker_id=%s",
			  be->path, id, be->marker, marker_id);
		return STORE_EFOREIGN;
	}
	return 0;
}

/*
 * Takes the folder's lock (see the top of the file).  flock(), not a POSIX
 * record lock: SQLite's own fcntl() locks on the database would be dropped
 * by any close() of another descriptor of the same file, and flock() locks
 * are independent of them.  Close-on-exec, so agents the server spawns do
 * not hold it after the server died.  The kernel drops it when the process
 * dies, kill -9 included, so a crash never leaves a stale lock behind.
 */
static int
folder_lock(struct store_backend *be)
{
	char *p = xasprintf("%s/shivneri.lock", be->dir);
	int fd, err = 0;

	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1) {
		err = -errno;
		log_warnx("- store lock_open_failed path=%s err=%s", p,
			  strerror(-err));
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		err = errno == EWOULDBLOCK ? STORE_EINUSE : -errno;
		log_warnx("- store lock_failed path=%s err=%s", p,
			  err == STORE_EINUSE ? "held by another process"
					      : strerror(errno));
		(void)close(fd);
		goto out;
	}
	be->lock_fd = fd;
out:
	free(p);
	return err;
}

/*
 * The open's reads and writes of the database: migrations, the identity,
 * recovery.  Each runs in a transaction of its own and can run again.
 */
static int
open_reads(struct store_backend *be, bool have_marker, const char *marker_id)
{
	int rc;

	if ((rc = migrate(be, have_marker)) != 0)
		return rc;
	if ((rc = identity_check(be, have_marker, marker_id)) != 0)
		return rc;
	return store__recover(be);
}

static int
db_open_steps(struct store_backend *be)
{
	char marker_id[STORE_ID_MAX];
	bool have_marker;
	int64_t size;
	int rc, i;

	if ((rc = folder_lock(be)) != 0)
		return rc;
	if ((rc = path_check(be, &size)) != 0)
		return rc;
	rc = marker_read(be, marker_id, sizeof(marker_id));
	if (rc != 0 && rc != -ENOENT)
		return rc;
	have_marker = rc == 0;
	if (have_marker && size <= 0) {
		log_warnx("- store db_missing path=%s size=%lld marker=%s: "
			  "refusing to start an empty store where one was",
			  be->path, (long long)size, be->marker);
		return STORE_EMISSING;
	}
	if ((rc = files_private(be, size < 0)) != 0)
		return rc;
	if ((rc = db_setup(be)) != 0)
		return rc;
	/*
	 * messages_active names every row recovery and the scan hand out: a
	 * damaged page of it is rebuilt from the table now, before anything
	 * reads it (and the indexes a previous run met damaged).  A rebuild
	 * that fails (the table is damaged too) changes nothing: the start
	 * goes on as without it.
	 */
	if (store__reindex(be->db, "messages_active", "start_check") < 0)
		log_warnx("- store reindex_skipped: the start goes on without");
	rc = open_reads(be, have_marker, marker_id);
	/*
	 * Damage met by the open's own reads (meta's index, say): rebuilt if
	 * it is an index's, then the reads once more.
	 */
	if ((rc == -EIO || rc == STORE_EDAMAGED) &&
	    store__reindex(be->db, NULL, "start_damaged") > 0)
		rc = open_reads(be, have_marker, marker_id);
	if (rc != 0)
		return rc;
	for (i = 0; i < ST_MAX; i++) {
		rc = sqlite3_prepare_v3(be->db, store__stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &be->stmt[i],
					NULL);
		if (rc != SQLITE_OK)
			return store__db_fail(be->db, rc, store__stmt_sql[i]);
	}
	return 0;
}

/*
 * A database SQLite finds malformed where every row depends on it (the
 * schema, the header, an index the open reads that could not be built
 * again) is refused with STORE_EDAMAGED, whose text says what to do,
 * rather than a bare "database error": guessing past it could start an
 * empty or partial store.  A damaged page of the messages table is not
 * refused: the start-up scan goes past it (store_sqlite_scan.c); nor is a
 * damaged index whose table is intact: it is built again (db_open_steps).
 */
int
store__db_open(struct store_backend *be)
{
	int rc = db_open_steps(be), code;

	if (rc == 0 || be->db == NULL)
		return rc;
	code = sqlite3_extended_errcode(be->db) & 0xff;
	if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) {
		log_warnx("- store db_damaged path=%s msg=\"%s\"", be->path,
			  sqlite3_errmsg(be->db));
		return STORE_EDAMAGED;
	}
	return rc;
}

void
store__db_close(struct store_backend *be)
{
	int i;

	store__outbox_close(be);
	for (i = 0; i < ST_MAX; i++) {
		sqlite3_finalize(be->stmt[i]);
		be->stmt[i] = NULL;
	}
	if (be->db != NULL && sqlite3_close(be->db) != SQLITE_OK)
		log_warnx("- store close_failed msg=\"%s\"",
			  sqlite3_errmsg(be->db));
	/* Last, once the database is closed: the next server may start. */
	if (be->lock_fd != -1)
		(void)close(be->lock_fd);
	be->lock_fd = -1;
	be->db = NULL;
}
