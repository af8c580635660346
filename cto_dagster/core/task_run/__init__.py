"""Running a task: the task step, one agent session in a work tree, the project's checks,
conflicts resolved by an agent, and the repository every step works on."""
