-- The log is append-only, enforced by the database itself so that neither a bug in the receiver
-- nor a stray statement in `sqlite3` can rewrite or remove what was acknowledged.
CREATE TRIGGER `events_no_update` BEFORE UPDATE ON `events`
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
--> statement-breakpoint
CREATE TRIGGER `events_no_delete` BEFORE DELETE ON `events`
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
--> statement-breakpoint
CREATE TRIGGER `deliveries_no_update` BEFORE UPDATE ON `deliveries`
BEGIN SELECT RAISE(ABORT, 'deliveries is append-only'); END;
--> statement-breakpoint
CREATE TRIGGER `deliveries_no_delete` BEFORE DELETE ON `deliveries`
BEGIN SELECT RAISE(ABORT, 'deliveries is append-only'); END;
