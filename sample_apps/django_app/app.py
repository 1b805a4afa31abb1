"""A one-file Django app (no database) for oxtui, served by gunicorn on one shared port (fd 3).

    oxtui run sample_apps/django_app/oxfile.toml         then: curl http://127.0.0.1:8001/
"""

import os
import sys

from django.conf import settings
from django.http import HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "sample-only-not-secret"),
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
)


def index(request):
    return HttpResponse(f"django release {os.environ.get('RELEASE', '1')} pid {os.getpid()} "
                        f"instance {os.environ.get('OXTUI_INSTANCE')}\n", content_type="text/plain")


def health(request):
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [path("", index), path("health", health)]

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings.configure)
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
asgi_application = get_asgi_application()
print(f"django app loaded in pid {os.getpid()}", file=sys.stderr, flush=True)
