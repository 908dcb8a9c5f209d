ALTER TABLE `forward_destinations` ADD `owner` text;--> statement-breakpoint
ALTER TABLE `forward_destinations` ADD `lease_until` integer;