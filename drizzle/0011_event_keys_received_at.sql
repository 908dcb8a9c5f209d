-- Time filters move to event_keys, written behind the log, so that the commit acknowledging a
-- delivery writes no index on `events` but the rare unparsed one. The times are copied through
-- events_received_at before it goes: its entries are a few dozen bytes, the rows of events a kilobyte.
ALTER TABLE `event_keys` ADD `received_at` text;--> statement-breakpoint
UPDATE `event_keys` SET `received_at` = `r`.`received_at`
	FROM (SELECT `id`, `received_at` FROM `events` INDEXED BY `events_received_at`) AS `r`
	WHERE `r`.`id` = `event_keys`.`event_id`;--> statement-breakpoint
CREATE INDEX `event_keys_received_at` ON `event_keys` (`received_at`);--> statement-breakpoint
-- A receiver older than 0.8.0, still serving during a hand-over, copies keys without the time: the
-- row gets it as it is inserted, so no time filter ever passes over it.
CREATE TRIGGER `event_keys_received_at_filled` AFTER INSERT ON `event_keys` WHEN NEW.`received_at` IS NULL
BEGIN
	UPDATE `event_keys` SET `received_at` = (SELECT `received_at` FROM `events` WHERE `id` = NEW.`event_id`) WHERE `event_id` = NEW.`event_id`;
END;--> statement-breakpoint
-- The digests event_digests is filled from are read from events itself: once per event, behind the log.
DROP INDEX `events_id_payload_sha256`;--> statement-breakpoint
DROP INDEX `events_received_at`;
