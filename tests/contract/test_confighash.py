"""What enters a stage's configuration hash: the sections it reads, by field name, without the fields that change
how it runs but not what it produces."""

from __future__ import annotations

from selfguide.contract.confighash import sections, spec_hash
from selfguide.spec import SelfGuideJobSpec
from tests import manifests


def spec(**fields) -> SelfGuideJobSpec:
    return SelfGuideJobSpec.model_validate({**manifests.generation()["spec"], **fields})


def test_a_section_with_a_two_word_name_is_read_by_its_field_name():
    cached = spec(modelCache={"claimName": "hf-cache"})
    assert sections(cached, ("model_cache",)) == {"model_cache": {"claimName": "hf-cache"}}
    assert sections(cached, ("model_cache",)) != sections(spec(), ("model_cache",))


def test_how_requests_reach_an_endpoint_is_left_out_of_the_hash_but_where_they_go_is_not():
    def endpoint(**fields):
        return spec(generation={"backend": "openai", "endpoint": {"url": "http://a:8000/v1", "model": "m", **fields}})

    base = spec_hash(endpoint(), "generate")
    assert spec_hash(endpoint(apiKeySecret={"name": "k"}, timeoutSeconds=5, maxRetries=0, concurrency=1),
                     "generate") == base
    assert spec_hash(endpoint(url="http://b:8000/v1"), "generate") != base
    assert spec_hash(endpoint(model="other"), "generate") != base
