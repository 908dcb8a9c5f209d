CREATE TABLE `deliveries` (
	`id` integer PRIMARY KEY NOT NULL,
	`event_id` integer NOT NULL,
	`received_at` text NOT NULL,
	`remote_address` text,
	`headers` text NOT NULL,
	`raw_body` text NOT NULL,
	`secret_label` text NOT NULL,
	`envelope_mismatch` integer NOT NULL,
	`duplicate` integer NOT NULL,
	`chain_hash` text NOT NULL,
	FOREIGN KEY (`event_id`) REFERENCES `events`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `deliveries_event_id` ON `deliveries` (`event_id`);--> statement-breakpoint
CREATE TABLE `events` (
	`id` integer PRIMARY KEY NOT NULL,
	`received_at` text NOT NULL,
	`event` text NOT NULL,
	`installation_id` text,
	`organization_id` text,
	`app_id` text,
	`transaction_id` text,
	`transaction_status` text,
	`transaction_type` text,
	`transaction_amount` real,
	`payload` text NOT NULL,
	`payload_sha256` text NOT NULL,
	`secret_label` text NOT NULL,
	`envelope_mismatch` integer NOT NULL,
	`chain_hash` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `events_payload_sha256` ON `events` (`payload_sha256`);--> statement-breakpoint
CREATE INDEX `events_organization_event` ON `events` (`organization_id`,`event`);--> statement-breakpoint
CREATE INDEX `events_installation` ON `events` (`installation_id`);--> statement-breakpoint
CREATE INDEX `events_event` ON `events` (`event`);--> statement-breakpoint
CREATE INDEX `events_received_at` ON `events` (`received_at`);--> statement-breakpoint
CREATE TABLE `rejections` (
	`slot` integer PRIMARY KEY NOT NULL,
	`seq` integer NOT NULL,
	`received_at` text NOT NULL,
	`remote_address` text,
	`status` integer NOT NULL,
	`reason` text NOT NULL,
	`body_size` integer NOT NULL,
	`body_sha256` text
);
--> statement-breakpoint
CREATE INDEX `rejections_seq` ON `rejections` (`seq`);