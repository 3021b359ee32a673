from starlette.testclient import TestClient

from tests.helpers import post_tip
from tests.mailsink import Sink


def test_form_renders_and_tip_is_delivered(client: TestClient, sink: Sink) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="what"' in page.text
    sent = post_tip(client, category="drugs", what="Có người bán ma túy ở chợ")
    assert sent.status_code == 200
    assert len(sink.handler.messages) == 1
    body = sink.handler.parsed()[0].get_body(("plain",))
    assert body is not None
    assert "Có người bán ma túy ở chợ" in body.get_content()
