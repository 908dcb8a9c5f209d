CREATE TABLE `event_keys` (
	`event_id` integer PRIMARY KEY NOT NULL,
	`event` text NOT NULL,
	`organization_id` text,
	`installation_id` text,
	FOREIGN KEY (`event_id`) REFERENCES `events`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
-- The keys of every event already in the log, before its indexes exist (faster that way round).
INSERT INTO `event_keys` (`event_id`, `event`, `organization_id`, `installation_id`)
SELECT `id`, `event`, `organization_id`, `installation_id` FROM `events` ORDER BY `id`;--> statement-breakpoint
CREATE INDEX `event_keys_organization_event` ON `event_keys` (`organization_id`,`event`);--> statement-breakpoint
CREATE INDEX `event_keys_organization` ON `event_keys` (`organization_id`);--> statement-breakpoint
CREATE INDEX `event_keys_installation` ON `event_keys` (`installation_id`);--> statement-breakpoint
CREATE INDEX `event_keys_event` ON `event_keys` (`event`);--> statement-breakpoint
DROP INDEX `events_organization_event`;--> statement-breakpoint
DROP INDEX `events_installation`;--> statement-breakpoint
DROP INDEX `events_event`;