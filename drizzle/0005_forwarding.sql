CREATE TABLE `forward_dead_letters` (
	`destination` text NOT NULL,
	`event_id` integer NOT NULL,
	`attempts` integer NOT NULL,
	`last_error` text NOT NULL,
	`dead_at` integer NOT NULL,
	PRIMARY KEY(`destination`, `event_id`)
);
--> statement-breakpoint
CREATE TABLE `forward_destinations` (
	`name` text PRIMARY KEY NOT NULL,
	`discovered_through` integer NOT NULL,
	`delivered` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `forward_lanes` (
	`destination` text NOT NULL,
	`installation` text NOT NULL,
	`through` integer NOT NULL,
	`attempts` integer NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`last_error` text,
	PRIMARY KEY(`destination`, `installation`)
);
--> statement-breakpoint
CREATE TABLE `forward_replays` (
	`destination` text NOT NULL,
	`event_id` integer NOT NULL,
	`requested_at` integer NOT NULL,
	`attempts` integer NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`last_error` text,
	PRIMARY KEY(`destination`, `event_id`)
);
