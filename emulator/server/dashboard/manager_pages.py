"""The dashboard's pages for the second data path and the combination model.

* ``/dashboard/managers``: every device manager with its last contact, last upload, how
  many printers it reports and its problems (:mod:`.combination` words them);
* ``/dashboard/managers/{id}``: one manager: who it is, its scope, the printers it
  reports, the uploads the server refused, its uploads (each downloadable as its zip)
  and actions;
* ``/dashboard/printers``: every printer (serial, model) from either path, one row each,
  with its sources;
* ``/dashboard/printers/{serial}?model=M``: the printer's two sources side by side
  (Device Direct agent vs device manager: last reading of each, which meters disagree),
  the server's scope setting for it, and the billing meters per day (one source a day).

Same login, templates and headers as :mod:`.pages`; the data is
:class:`emulator.server.sources.Sources`, the object the admin API serves from.
"""

from __future__ import annotations

from aiohttp import web

from emulator.server.dashboard import combination
from emulator.server.dashboard.pages import PREFIX, _admin, _render
from emulator.server.http_common import server_of
from emulator.server.manager_api import sources_of


async def managers_page(request: web.Request) -> web.Response:
    session = _admin(request)
    now = server_of(request).clock.now()
    rows = combination.managers(sources_of(request), now)
    return _render(request, "managers.html", session=session, title="Device managers",
                   managers=rows, now=now.isoformat(timespec="seconds"))


async def manager_page(request: web.Request) -> web.Response:
    session = _admin(request)
    manager_id = request.match_info["mid"]
    view = combination.manager(sources_of(request), manager_id,
                               server_of(request).clock.now())
    if view is None:
        raise web.HTTPNotFound(reason=f"no manager {manager_id}")
    return _render(request, "manager.html", session=session,
                   title=f"Manager {view['manager']['hostname']}", **view)


async def download_upload(request: web.Request) -> web.Response:
    _admin(request)
    upload_id = request.match_info["upload_id"]
    body = sources_of(request).upload_zip(request.match_info["mid"], upload_id)
    if body is None:
        raise web.HTTPNotFound(reason="no such upload for this manager")
    return web.Response(body=body, content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{upload_id}.zip"'})


async def printers_page(request: web.Request) -> web.Response:
    session = _admin(request)
    rows = combination.printers(sources_of(request))
    return _render(request, "printers.html", session=session, title="Printers",
                   printers=rows)


async def printer_page(request: web.Request) -> web.Response:
    session = _admin(request)
    serial = request.match_info["serial"]
    view = combination.printer(sources_of(request), serial, request.query.get("model"))
    if view is None:
        raise web.HTTPNotFound(reason=f"no printer {serial}")
    if isinstance(view, list):  # several models share the serial: let the person choose
        return _render(request, "printer_models.html", session=session,
                       title=f"Printer {serial}", serial=serial, models=view)
    return _render(request, "printer.html", session=session,
                   title=f"Printer {view['model']} {serial}", kinds=combination.KIND_NAMES,
                   **view)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(PREFIX + "/managers", managers_page)
    r.add_get(PREFIX + "/managers/{mid}", manager_page)
    r.add_get(PREFIX + "/managers/{mid}/uploads/{upload_id}.zip", download_upload)
    r.add_get(PREFIX + "/printers", printers_page)
    r.add_get(PREFIX + "/printers/{serial}", printer_page)
