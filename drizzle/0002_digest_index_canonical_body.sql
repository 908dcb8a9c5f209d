DROP INDEX `events_payload_sha256`;--> statement-breakpoint
CREATE INDEX `events_id_payload_sha256` ON `events` (`id`,`payload_sha256`);--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_deliveries` (
	`id` integer PRIMARY KEY NOT NULL,
	`event_id` integer NOT NULL,
	`received_at` text NOT NULL,
	`remote_address` text,
	`headers` text NOT NULL,
	`raw_body` text,
	`secret_label` text NOT NULL,
	`envelope_mismatch` integer NOT NULL,
	`duplicate` integer NOT NULL,
	`chain_hash` text NOT NULL,
	FOREIGN KEY (`event_id`) REFERENCES `events`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
INSERT INTO `__new_deliveries`("id", "event_id", "received_at", "remote_address", "headers", "raw_body", "secret_label", "envelope_mismatch", "duplicate", "chain_hash") SELECT "id", "event_id", "received_at", "remote_address", "headers", "raw_body", "secret_label", "envelope_mismatch", "duplicate", "chain_hash" FROM `deliveries`;--> statement-breakpoint
DROP TABLE `deliveries`;--> statement-breakpoint
ALTER TABLE `__new_deliveries` RENAME TO `deliveries`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `deliveries_event_id` ON `deliveries` (`event_id`);--> statement-breakpoint
-- Rebuilding the table (SQLite cannot drop a NOT NULL in place) dropped its append-only triggers
-- with it: the same two as in 0001_append_only.
CREATE TRIGGER `deliveries_no_update` BEFORE UPDATE ON `deliveries`
BEGIN SELECT RAISE(ABORT, 'deliveries is append-only'); END;
--> statement-breakpoint
CREATE TRIGGER `deliveries_no_delete` BEFORE DELETE ON `deliveries`
BEGIN SELECT RAISE(ABORT, 'deliveries is append-only'); END;
