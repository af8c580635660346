"""Projects, configured without Python: a short YAML file, or environment variables.

Where the configuration comes from, in order:
1. `CTO_DAGSTER_CONFIG`: a YAML file with a `projects:` list (paths in it are relative to it);
2. `CTO_DAGSTER_REPOSITORY` (+ `CTO_DAGSTER_PROJECT`, `CTO_DAGSTER_TAG` or `CTO_DAGSTER_TAGS`,
   `CTO_DAGSTER_BASE_BRANCH`, `CTO_DAGSTER_AGENT`, ...): one project;
3. nothing: the embedded demo, a sample repository under `CTO_DAGSTER_DEMO_DIR`
   (default `.cto-dagster/demo`) with the guide's example tasks and the demo agent.

The package: `models` (the shape), `loading` (where it comes from), `tasks_source` (the tasks file
at a commit, planned).
"""

from cto_dagster.core.settings.loading import (
    demo_settings,
    format_validation,
    load_settings,
    load_yaml_settings,
)
from cto_dagster.core.settings.models import (
    AGENT_SCAFFOLDING,
    DEFAULT_DEMO_DIR,
    AgentSettings,
    ConflictSettings,
    GitHubSettings,
    GitSettings,
    IntegrationSettings,
    KubernetesSettings,
    ProjectSettings,
    Settings,
    SettingsError,
)
from cto_dagster.core.settings.tasks_source import (
    PINNED_COMMITS_ENV,
    plan_project,
    planned_commit,
    planned_commits,
    planned_commits_pin,
    tasks_files_at,
    tasks_source,
)

__all__ = [
    "AGENT_SCAFFOLDING",
    "DEFAULT_DEMO_DIR",
    "PINNED_COMMITS_ENV",
    "AgentSettings",
    "ConflictSettings",
    "GitHubSettings",
    "GitSettings",
    "IntegrationSettings",
    "KubernetesSettings",
    "ProjectSettings",
    "Settings",
    "SettingsError",
    "demo_settings",
    "format_validation",
    "load_settings",
    "load_yaml_settings",
    "plan_project",
    "planned_commit",
    "planned_commits",
    "planned_commits_pin",
    "tasks_files_at",
    "tasks_source",
]
