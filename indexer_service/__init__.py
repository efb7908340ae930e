"""The indexer job: streams Fashionpedia's images to the embedder, writes vectors to ChromaDB."""
