PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_event_keys` (
	`event_id` integer PRIMARY KEY NOT NULL,
	`event` text,
	`organization_id` text,
	`installation_id` text,
	FOREIGN KEY (`event_id`) REFERENCES `events`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
INSERT INTO `__new_event_keys`("event_id", "event", "organization_id", "installation_id") SELECT "event_id", "event", "organization_id", "installation_id" FROM `event_keys`;--> statement-breakpoint
DROP TABLE `event_keys`;--> statement-breakpoint
ALTER TABLE `__new_event_keys` RENAME TO `event_keys`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `event_keys_organization_event` ON `event_keys` (`organization_id`,`event`);--> statement-breakpoint
CREATE INDEX `event_keys_organization` ON `event_keys` (`organization_id`);--> statement-breakpoint
CREATE INDEX `event_keys_installation` ON `event_keys` (`installation_id`);--> statement-breakpoint
CREATE INDEX `event_keys_event` ON `event_keys` (`event`);--> statement-breakpoint
CREATE TABLE `__new_events` (
	`id` integer PRIMARY KEY NOT NULL,
	`received_at` text NOT NULL,
	`event` text,
	`installation_id` text,
	`organization_id` text,
	`app_id` text,
	`transaction_id` text,
	`transaction_status` text,
	`transaction_type` text,
	`transaction_amount` real,
	`payload` text,
	`payload_sha256` text NOT NULL,
	`secret_label` text NOT NULL,
	`envelope_mismatch` integer NOT NULL,
	`chain_hash` text NOT NULL,
	`unparsed_reason` text
);
--> statement-breakpoint
-- Every event before this migration was parsed: their unparsed_reason is NULL.
INSERT INTO `__new_events`("id", "received_at", "event", "installation_id", "organization_id", "app_id", "transaction_id", "transaction_status", "transaction_type", "transaction_amount", "payload", "payload_sha256", "secret_label", "envelope_mismatch", "chain_hash") SELECT "id", "received_at", "event", "installation_id", "organization_id", "app_id", "transaction_id", "transaction_status", "transaction_type", "transaction_amount", "payload", "payload_sha256", "secret_label", "envelope_mismatch", "chain_hash" FROM `events`;--> statement-breakpoint
DROP TABLE `events`;--> statement-breakpoint
ALTER TABLE `__new_events` RENAME TO `events`;--> statement-breakpoint
CREATE INDEX `events_id_payload_sha256` ON `events` (`id`,`payload_sha256`);--> statement-breakpoint
CREATE INDEX `events_received_at` ON `events` (`received_at`);--> statement-breakpoint
CREATE INDEX `events_unparsed` ON `events` (`id`) WHERE "events"."event" IS NULL;--> statement-breakpoint
-- The new table needs the append-only triggers of 0001_append_only again (dropping a table drops them).
CREATE TRIGGER `events_no_update` BEFORE UPDATE ON `events`
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
--> statement-breakpoint
CREATE TRIGGER `events_no_delete` BEFORE DELETE ON `events`
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
