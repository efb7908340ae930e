"""The query service: a text or an image in, the nearest indexed Fashionpedia photos out."""
