"""Hub requests: course teams ask for a hub, unit admins and the platform team review, approval commits the course
file to the catalog repository; the database keeps requests, reviews, comments and the audit log (issue 13)."""
