CREATE TABLE `event_digests` (
	`digest` blob NOT NULL,
	`event_id` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `event_digests_progress` (
	`id` integer PRIMARY KEY NOT NULL,
	`through` integer NOT NULL,
	`generation` integer DEFAULT 0 NOT NULL,
	CONSTRAINT "event_digests_progress_one_row" CHECK("event_digests_progress"."id" = 1)
);
--> statement-breakpoint
-- How far event_keys holds every event's digest, as a 0.5.0 receiver reads it: the digests up to
-- there move across, and the writer holds the events after it in memory until it copies them.
INSERT INTO `event_digests_progress` (`id`, `through`) VALUES (1, coalesce(
	(SELECT min(`event_id`) - 1 FROM `event_keys` WHERE `digest` IS NULL),
	(SELECT max(`event_id`) FROM `event_keys`),
	0));
--> statement-breakpoint
-- Before the index exists: one sort builds it, instead of an insert per row into a random key.
INSERT INTO `event_digests` (`digest`, `event_id`)
	SELECT `digest`, `event_id` FROM `event_keys` WHERE `event_id` <= (SELECT `through` FROM `event_digests_progress`);
--> statement-breakpoint
CREATE UNIQUE INDEX `event_digests_digest_event` ON `event_digests` (`digest`,`event_id`);
--> statement-breakpoint
-- The writer never deletes from event_digests: a delete is someone emptying it to be rebuilt, and
-- whatever it removed must not stay counted as copied (see event_digests_progress in the schema).
CREATE TRIGGER `event_digests_deleted` AFTER DELETE ON `event_digests`
BEGIN
	UPDATE `event_digests_progress` SET `through` = 0, `generation` = `generation` + 1 WHERE `id` = 1;
END;
