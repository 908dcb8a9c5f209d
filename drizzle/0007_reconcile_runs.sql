CREATE TABLE `reconcile_runs` (
	`id` integer PRIMARY KEY NOT NULL,
	`started_at` text NOT NULL,
	`finished_at` text NOT NULL,
	`source` text NOT NULL,
	`ok` integer NOT NULL,
	`error` text,
	`since` text,
	`installations_checked` integer NOT NULL,
	`transactions_checked` integer NOT NULL,
	`missed_installations` integer NOT NULL,
	`missed_uninstallations` integer NOT NULL,
	`missed_transactions` integer NOT NULL,
	`gaps` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `reconcile_runs_started_at` ON `reconcile_runs` (`started_at`);