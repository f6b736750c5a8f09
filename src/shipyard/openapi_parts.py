"""Which capabilities describe themselves in the OpenAPI document, in the order it lists
their paths and tags (the per-collection tags go last): part of the composition root, so
that http/ assembles parts without naming any capability."""

from __future__ import annotations

import functools

from shipyard.auth import openapi as auth_spec
from shipyard.dbadvice import openapi as db_spec
from shipyard.http import openapi_system
from shipyard.http.openapi import PartBuilder, without_collections
from shipyard.jobs import openapi as jobs_spec
from shipyard.records import openapi as records_spec
from shipyard.settings import Settings
from shipyard.webhooks import openapi as webhooks_spec


def openapi_parts(settings: Settings) -> list[PartBuilder]:
    return [
        without_collections(openapi_system.openapi),
        without_collections(records_spec.collections_openapi),
        auth_spec.openapi,
        functools.partial(records_spec.openapi, settings=settings),
        without_collections(db_spec.openapi),
        without_collections(jobs_spec.openapi),
        without_collections(webhooks_spec.openapi),
    ]
