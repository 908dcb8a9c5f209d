CREATE TABLE `consumers` (
	`name` text PRIMARY KEY NOT NULL,
	`position` integer NOT NULL,
	`created_at` text NOT NULL,
	`updated_at` text NOT NULL
);
